"""Issue 11, bounds: fixed buffers filled from what the edge does not control.

/readyz lists every shard with no live node in a 1 KiB buffer; with 64 shards of every service
and no node, the list is longer than that, and the edge once wrote past the buffer (snprintf's
return value used as an offset). Now the list is cut short and the edge stays up.
"""

import os
import sys
import unittest

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, DEFAULT_ACTORS  # noqa: E402

SERVICES = ("cart", "catalog", "identity", "inventory", "notifications", "orders", "payments", "shipping")


class ReadyzBounds(unittest.TestCase):
    def test_readyz_with_every_shard_missing(self):
        c = Cluster(actors=DEFAULT_ACTORS, env={"MERCATO_SHARDS": ",".join("%s=64" % s for s in SERVICES)})
        self.addCleanup(c.cleanup)
        try:
            c.start("broker")
            c.start("edge")
            for _ in range(3):
                r = requests.get(c.base_url + "/readyz", timeout=5)
                self.assertEqual(r.status_code, 503, r.text)
                problem = r.json()
                self.assertEqual(problem["code"], "service_unavailable")
                self.assertIn("cart.0", problem["detail"])
                self.assertLessEqual(len(problem["detail"]), 1200)
            self.assertEqual(requests.get(c.base_url + "/healthz", timeout=5).status_code, 200)
            self.assertTrue(c.procs["edge"].alive(), "the edge died answering /readyz")
        except Exception:
            c.failed = True
            sys.stderr.write(c.tails())
            raise


if __name__ == "__main__":
    unittest.main()
