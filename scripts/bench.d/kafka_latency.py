#!/usr/bin/env python3
"""Write-to-Kafka latency: from a product write's HTTP 201 to a Kafka consumer seeing its
product.created (matched by ce_correlationid = the request's X-Request-Id), at a steady rate.

usage: kafka_latency.py EDGE_URL BOOTSTRAP ADMIN_EMAIL ADMIN_PASSWORD [RATE] [SECONDS]
Prints one line: achieved rate, p50 and p99 in ms, and how many events were not seen."""
import sys
import threading
import time
import uuid

import requests
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

edge, bootstrap, email, password = sys.argv[1:5]
rate = float(sys.argv[5]) if len(sys.argv) > 5 else 500.0
seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 10.0
token = requests.post(edge + "/api/v1/auth/login", json={"email": email, "password": password},
                      timeout=10).json()["access_token"]
auth = {"Authorization": "Bearer " + token}

seen = {}
stop = threading.Event()
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat-" + uuid.uuid4().hex[:6],
                     "enable.auto.commit": False, "fetch.wait.max.ms": 5})
consumer.assign([TopicPartition("product.events", p, OFFSET_END) for p in range(4)])


def consume():
    # one record per poll: a batch call waits to fill its batch, which would add to what we measure
    while not stop.is_set():
        m = consumer.poll(0.01)
        if m is not None and m.error() is None:
            corr = dict(m.headers() or []).get("ce_correlationid")
            if corr:
                seen.setdefault(corr.decode(), time.monotonic())


reader = threading.Thread(target=consume, daemon=True)
reader.start()
time.sleep(1.0)     # let the assignment settle before the first write

acked = {}
lock = threading.Lock()
run = uuid.uuid4().hex[:6]
total = int(rate * seconds)
workers = 16


def write(worker):
    s = requests.Session()
    for i in range(worker, total, workers):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rid = "lat-%s-%d" % (run, i)
        r = s.post(edge + "/api/v1/products", headers=dict(auth, **{"X-Request-Id": rid}), timeout=10,
                   json={"sku": "LAT-%s-%d" % (run, i), "name": "latency", "description": "",
                         "category": "latency", "price_cents": 1})
        if r.status_code == 201:
            with lock:
                acked[rid] = time.monotonic()


start = time.monotonic()
threads = [threading.Thread(target=write, args=(w,)) for w in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
deadline = time.monotonic() + 10
while time.monotonic() < deadline and any(rid not in seen for rid in acked):
    time.sleep(0.05)
stop.set()
reader.join()
consumer.close()

lat = sorted(max(0.0, seen[rid] - t) * 1000 for rid, t in acked.items() if rid in seen)
missing = sum(1 for rid in acked if rid not in seen)
if not lat:
    print("write-to-kafka: no events seen")
    sys.exit(1)
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
print("write-to-kafka: %d writes at %.0f/s, p50 %.1f ms, p99 %.1f ms, %d not seen (goal: p99 under 50 ms at 500/s)"
      % (len(acked), len(acked) / elapsed, p(0.50), p(0.99), missing))
