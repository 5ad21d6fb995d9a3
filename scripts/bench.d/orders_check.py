#!/usr/bin/env python3
"""After the order run: units reserved across the benchmark's products, from the inventory API.

usage: orders_check.py EDGE_URL DATA_FILE
Reads the product ids from DATA_FILE ("P <json id>" lines, see orders_setup.py), waits until the
sum of their `reserved` stops changing (orders still in flight when wrk stopped may complete
after it), and prints that sum. Every order has 2 lines of quantity 1, so it is 2 x orders."""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

edge, data_file = sys.argv[1:3]
with open(data_file) as f:
    products = [json.loads(line[2:]) for line in f if line.startswith("P ")]


def reserved(chunk):
    s = requests.Session()
    total = 0
    for pid in chunk:
        r = s.get(edge + "/api/v1/inventory/" + pid, timeout=30)
        r.raise_for_status()
        total += r.json()["reserved"]
    return total


def total():
    with ThreadPoolExecutor(4) as ex:
        return sum(ex.map(reserved, [products[i::4] for i in range(4)]))


last = total()
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    time.sleep(1.0)
    now = total()
    if now == last:
        break
    last = now
print(last)
