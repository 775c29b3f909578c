#!/usr/bin/env python3
"""Writes COUNT contact items for the bulk import to stdout, one at a time, so any size fits in memory.

    bench/gen_contacts.py 1000000 > contacts.ndjson
    bench/gen_contacts.py 1000000 --format array --pad 500 > contacts.json
    bench/gen_contacts.py 1000000 --stamp stamps.txt | curl … --data-binary @-

With --stamp, each time another --every items have been written (and taken by the reader:
a pipe blocks while the server is behind), "ITEMS UNIX_TIME" is appended to the file: an
importer's progress, measured from the input side.
"""
import argparse
import json
import os
import sys
import time


def contact(i, pad, last_name):
    item = {
        "email": f"user{i}@example.com",
        "firstName": f"Name{i}",
        "lastName": last_name,
        # +420 72, 73, 77 and 79 are Czech mobile ranges throughout (unlike 70, 71, 74-76, 78), so
        # every number passes a mobile check; distinct for the first 40 million items.
        "phone": f"+420 7{(2, 3, 7, 9)[i // 10000000 % 4]}{i % 10000000:07d}",
        "groups": ["Import test"],
        "meta": {"source": "bench", "n": i},
    }
    if pad:
        item["meta"]["pad"] = "x" * pad
    return json.dumps(item, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, metavar="COUNT")
    parser.add_argument("--format", choices=["ndjson", "array"], default="ndjson")
    parser.add_argument("--pad", type=int, default=0, metavar="BYTES", help="extra bytes per item, in meta.pad")
    parser.add_argument("--last-name", default="Surname", help="every item's lastName (another one updates each contact)")
    parser.add_argument("--start", type=int, default=0, metavar="N", help="number of the first item")
    parser.add_argument("--stamp", metavar="FILE", help="append 'ITEMS UNIX_TIME' every --every items")
    parser.add_argument("--every", type=int, default=100000, metavar="N", help="items between stamps")
    args = parser.parse_args()
    if args.count < 0 or args.pad < 0:
        parser.error("COUNT and --pad must not be negative")
    out = sys.stdout
    array = args.format == "array"
    stamps = open(args.stamp, "a", buffering=1) if args.stamp else None
    try:
        if array:
            out.write("[\n")
        if stamps:
            out.flush()
            stamps.write(f"0 {time.time():.3f}\n")
        for i in range(args.count):
            n = args.start + i
            if array:
                out.write(contact(n, args.pad, args.last_name) + (",\n" if i + 1 < args.count else "\n"))
            else:
                out.write(contact(n, args.pad, args.last_name) + "\n")
            if stamps and (i + 1) % args.every == 0:
                out.flush()
                stamps.write(f"{i + 1} {time.time():.3f}\n")
        if array:
            out.write("]\n")
        out.flush()
    except BrokenPipeError:
        # A reader that stops early (`| head`) is not an error; the flush at exit would report it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
