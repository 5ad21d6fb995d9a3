#!/usr/bin/env python3
"""The ids of every product, through the API: for a catalog-seed that writes no id list (an
older build given as BENCH_BASELINE_BUILD).

usage: list_ids.py EDGE_URL OUT_FILE
Follows GET /api/v1/products?limit=100 page by page (next_cursor) and writes one id a line.
Exits 1 with the reason on any non-200 page."""
import sys

import requests

edge, out_file = sys.argv[1:3]
s = requests.Session()
ids, cursor = [], None
while True:
    params = {"limit": 100}
    if cursor:
        params["cursor"] = cursor
    r = s.get(edge + "/api/v1/products", params=params, timeout=30)
    if r.status_code != 200:
        sys.exit("GET /api/v1/products: %d %s" % (r.status_code, r.text[:300]))
    page = r.json()
    ids += [p["id"] for p in page["items"]]
    cursor = page.get("next_cursor")
    if not cursor or not page["items"]:
        break
with open(out_file, "w") as f:
    f.writelines(i + "\n" for i in ids)
