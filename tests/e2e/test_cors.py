"""CORS: off unless configured; when configured, only the listed origins are allowed."""

import unittest

import requests

from harness import Cluster

SHOP = "https://shop.example"


class CorsOff(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster().start_all()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def test_options_lists_methods_without_cors(self):
        r = requests.options(self.cluster.api + "/products", headers={
            "Origin": SHOP, "Access-Control-Request-Method": "POST"}, timeout=5)
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.headers.get("Allow"), "GET, HEAD, POST, OPTIONS")
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        g = requests.get(self.cluster.api + "/products", headers={"Origin": SHOP}, timeout=5)
        self.assertNotIn("Access-Control-Allow-Origin", g.headers)


class CorsOn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(env={"MERCATO_CORS_ORIGINS": SHOP + ",https://admin.example"}).start_all()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def test_preflight_for_a_listed_origin(self):
        r = requests.options(self.cluster.api + "/products/abc", headers={
            "Origin": SHOP, "Access-Control-Request-Method": "PATCH"}, timeout=5)
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), SHOP)
        self.assertIn("PATCH", r.headers.get("Access-Control-Allow-Methods", ""))
        self.assertIn("If-Match", r.headers.get("Access-Control-Allow-Headers", ""))
        self.assertEqual(r.headers.get("Vary"), "Origin")

    def test_responses_carry_the_origin_and_expose_headers(self):
        r = requests.get(self.cluster.api + "/products", headers={"Origin": "https://admin.example"}, timeout=5)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "https://admin.example")
        self.assertIn("ETag", r.headers.get("Access-Control-Expose-Headers", ""))

    def test_other_origins_get_nothing(self):
        for origin in ("https://evil.example", SHOP + ".evil.example", "null"):
            r = requests.get(self.cluster.api + "/products", headers={"Origin": origin}, timeout=5)
            self.assertNotIn("Access-Control-Allow-Origin", r.headers, origin)


if __name__ == "__main__":
    unittest.main()
