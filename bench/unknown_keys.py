"""GET /ping/v1 with a random well-formed PROD key per request, from a given local
address, for a given number of seconds, on one keep-alive connection; prints how many
keys were sent and the answers by status.

    python3 bench/unknown_keys.py SOURCE_ADDRESS PORT SECONDS
"""
import collections
import http.client
import random
import string
import sys
import time

source, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
alphabet = string.ascii_letters + string.digits
statuses = collections.Counter()
deadline = time.monotonic() + seconds
conn = None
while time.monotonic() < deadline:
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    key = "PROD" + "".join(random.choices(alphabet, k=28))
    try:
        conn.request("GET", "/ping/v1?apiKey=" + key)
        response = conn.getresponse()
        response.read()
        statuses[response.status] += 1
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = None
    except (OSError, http.client.HTTPException):
        statuses["error"] += 1
        conn.close()
        conn = None
print(sum(statuses.values()), " ".join(f"{k}:{v}" for k, v in sorted(statuses.items(), key=str)))
