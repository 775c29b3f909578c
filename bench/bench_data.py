#!/usr/bin/env python3
"""The customers of bench/compare.sh: loads them into SQLite, or writes the samples wrk picks from.

    bench/bench_data.py sqlite DB SPACE LO HI SESSIONS   # customers LO..HI (1-based) into the demo live space
    bench/bench_data.py samples DIR N SESSIONS           # DIR/{sessions,customers,lists}.txt for N customers

Customer i is a pure function of i, so bench/load_sqlite.sql, bench/load.sql (PostgreSQL) and
the samples agree without reading each other's output. Keep cu(), email(), identity() and
session_sample() in step with those two files.
"""
import hashlib
import random
import re
import sqlite3
import sys
import time
from pathlib import Path

# cuRefNo: 16 digits (valid for the CuRefNo parser), scattered over [1e15, 2e15) so the index
# is filled in random order like generated ones. pgbench computes the same from i: it has
# integer arithmetic but no strings. New customers made by pgbench use 2e15 and up.
CU_BASE = 10**15
CU_MUL = 912345678901  # coprime with 10^15: distinct for every i
# A second session per sampled customer whose digest pgbench can compute (it cannot hash).
PGBENCH_DIGEST_BASE = 5 * 10**15

# The ASCII forms the addresses are made of (the names themselves are only in the loaders).
FIRST = ["jan", "petr", "lucie", "tereza", "tomas", "jiri", "eva", "martin", "katerina", "pavel", "anna", "jakub",
         "marie", "lukas", "veronika", "david"]
LAST = ["novak", "svoboda", "dvorak", "cerny", "prochazka", "kucera", "vesely", "horak", "nemec", "pokorny", "marek",
        "pospisil", "hajek", "kral", "jelinek", "ruzicka", "benes", "fiala", "sedlacek", "dolezal", "zeman", "kolar",
        "navratil"]
# gmail.com first: its canonical form drops the dots, so create-existing exercises canonicalisation.
DOMAINS = ["gmail.com", "seznam.cz", "email.cz", "centrum.cz", "example.com"]


def cu(i):
    return str(CU_BASE + (i * CU_MUL) % CU_BASE)


def email(i):
    """(stored address, canonical address)."""
    f, l = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    domain = DOMAINS[i % len(DOMAINS)]
    if domain == "gmail.com":
        return f"{f}.{l}.{i}@gmail.com", f"{f}{l}{i}@gmail.com"
    address = f"{f}.{l}{i}@{domain}"
    return address, address


def identity(i):
    """The identityId of customer i's session: 32 hex digits, so 32 letters or digits."""
    return hashlib.md5(f"bench-identity-{i}".encode()).hexdigest()


def session_sample(n, sessions):
    """Customers with a session: `sessions` of them spread evenly over 1..n."""
    s = min(sessions, n)
    return [k * n // s for k in range(1, s + 1)]


def load_sqlite(db, space, lo, hi, sessions):
    """Runs bench/load_sqlite.sql: all in SQLite's C, Python only binds and hashes."""
    script = (Path(__file__).parent / "load_sqlite.sql").read_text()
    statements = [s for s in script.split(";\n") if s.strip() and not all(
        line.startswith("--") for line in s.strip().splitlines())]
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.create_function("md5", 1, lambda s: hashlib.md5(s.encode()).hexdigest(), deterministic=True)
    con.create_function("sha256", 1, lambda s: hashlib.sha256(s.encode()).hexdigest(), deterministic=True)
    # The server keeps WAL; this connection alone skips fsyncs and gets a big cache.
    con.execute("pragma synchronous = off")
    con.execute("pragma cache_size = -1000000")
    con.execute("pragma temp_store = memory")
    con.execute("begin immediate")
    base = con.execute("select coalesce(max(id), 0) + 1 from customers").fetchone()[0]
    params = {"space": space, "lo": lo, "hi": hi, "sessions": sessions, "now": int(time.time()), "base": base}
    # The customers' own indexes are rebuilt from their definitions after the insert (those of
    # UNIQUE constraints cannot be dropped): a sorted build instead of random insertions.
    indexes = con.execute("select name, sql from sqlite_master where type = 'index' and tbl_name = 'customers' "
                          "and sql is not null").fetchall()
    for name, _ in indexes:
        con.execute(f'drop index "{name}"')
    for statement in statements:
        params["now"] = int(time.time())  # the sessions, last, are seen as of the end of the load
        names = set(re.findall(r"(?<!:):([a-z]+)", statement))
        con.execute(statement, {k: v for k, v in params.items() if k in names})
    for _, sql in indexes:
        con.execute(sql)
    con.execute("commit")
    con.execute("analyze")
    con.execute("pragma wal_checkpoint(truncate)")
    con.close()


def samples(out, n, sessions):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sessions.txt", "w") as f:
        for i in session_sample(n, sessions):
            f.write(f"{cu(i)} {identity(i)}\n")
    rng = random.Random(n)
    picked = rng.sample(range(1, n + 1), min(n, 20000))
    with open(out / "customers.txt", "w") as f:
        for i in picked:
            f.write(f"{cu(i)} {email(i)[0]}\n")
    # Customers with relations on both sides (see matches() and bench/load.sql).
    with open(out / "lists.txt", "w") as f:
        for i in range(25, n - 2, 50):
            f.write(f"{cu(i)}\n")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sqlite":
        db, space, lo, hi, sessions = args
        load_sqlite(db, int(space), int(lo), int(hi), int(sessions))
    elif cmd == "samples":
        out, n, sessions = args
        samples(out, int(n), int(sessions))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
