"""CONTRACT 4 (catalog) through HTTP against a running broker + node + edge.

One cluster serves the whole class; every test isolates itself with unique skus, categories and
search words, so tests may run in any order and alone.
"""

import json
import os
import re
import sys
import threading
import unittest
import uuid

import requests
from urllib.parse import urljoin, urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ClusterTestCase

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PRODUCT_FIELDS = {"id", "sku", "name", "description", "category", "price_cents", "currency",
                  "images", "featured", "created_at", "updated_at"}


def uniq(prefix="e2e"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def word():
    """A search word no other product contains (letters only)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def shards(service):
    """The shard count the cluster runs service with, read from MERCATO_SHARDS as the processes
    read it ("16", "16,catalog=4"), 1 when unset."""
    every = 1
    for part in os.environ.get("MERCATO_SHARDS", "").split(","):
        name, _, value = part.rpartition("=")
        if value.isdigit() and name in ("", service):
            if name == service:
                return int(value)
            every = int(value)
    return every


def home(sku):
    """The catalog shard that decides who has sku: FNV-1a of its lowercase form."""
    h = 2166136261
    for b in sku.lower().encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % shards("catalog")


def sku_at(avoid=(), want=None):
    """A fresh sku whose home is want, or is none of avoid (when there are shards enough)."""
    n = shards("catalog")
    for _ in range(10000):
        sku = uniq("SKU")
        if want is not None and home(sku) == want:
            return sku
        if want is None and (home(sku) not in avoid or len(set(avoid)) >= n):
            return sku
    raise AssertionError("no sku found on the shard asked for")


class CatalogCase(ClusterTestCase):
    P = "/api/v1/products"

    def product(self, **over):
        body = {"sku": uniq("SKU"), "name": "Test product", "description": "A product for tests",
                "category": uniq("cat"), "price_cents": 1999}
        body.update(over)
        return body

    def create(self, **over):
        body = self.product(**over)
        r = self.post_json(self.P, body)
        self.assertStatus(r, 201)
        return r.json()

    def list(self, **params):
        r = self.get(self.P + "?" + urlencode(params))
        self.assertStatus(r, 200)
        page = r.json()
        self.assertIsInstance(page.get("items"), list, page)
        self.assertIn("next_cursor", page, page)
        return page

    def list_all(self, page_limit=50, **params):
        """Walk every page; returns the items in order and the number of pages."""
        items, cursor, pages = [], None, 0
        while True:
            q = dict(params)
            if cursor is not None:
                q["cursor"] = cursor
            page = self.list(**q)
            pages += 1
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items, pages
            self.assertIsInstance(cursor, str)
            self.assertLess(pages, page_limit, "pagination does not terminate")

    def skus(self, **params):
        items, _ = self.list_all(**params)
        return sorted(p["sku"] for p in items)

    def etag_of(self, pid):
        r = self.get(self.P + "/" + pid)
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("ETag"), "GET without ETag: %s" % dict(r.headers))
        return r.headers["ETag"]


class TestCreate(CatalogCase):
    def test_create_returns_201_location_and_all_fields(self):
        body = self.product()
        r = self.post_json(self.P, body)
        self.assertStatus(r, 201)
        p = r.json()
        self.assertEqual(set(p) & PRODUCT_FIELDS, PRODUCT_FIELDS, "missing fields in %s" % p)
        for k in ("sku", "name", "description", "category", "price_cents"):
            self.assertEqual(p[k], body[k], k)
        self.assertIsInstance(p["id"], str)
        self.assertTrue(p["id"])
        self.assertEqual(p["currency"], "USD")          # default
        self.assertEqual(p["images"], [])
        self.assertIs(p["featured"], False)
        for k in ("created_at", "updated_at"):
            self.assertRegex(p[k], RFC3339_UTC)
        # Location names the new product and resolves to it.
        loc = r.headers.get("Location")
        self.assertTrue(loc, "no Location header: %s" % dict(r.headers))
        self.assertEqual(urljoin(self.url(self.P), loc), self.url(self.P + "/" + p["id"]))
        g = self.http.get(urljoin(self.url(self.P), loc), timeout=10)
        self.assertStatus(g, 200)
        self.assertEqual(g.json(), p)

    def test_create_with_optional_fields(self):
        p = self.create(currency="EUR", images=["https://img.example.com/a.png",
                                                "https://img.example.com/b.png"],
                        featured=True)
        self.assertEqual(p["currency"], "EUR")
        self.assertEqual(p["images"], ["https://img.example.com/a.png",
                                       "https://img.example.com/b.png"])
        self.assertIs(p["featured"], True)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json(), p)

    def test_ids_are_distinct_and_time_ordered(self):
        made = [self.create() for _ in range(8)]
        self.assertEqual(len({p["id"] for p in made}), len(made))
        for a, b in zip(made, made[1:]):
            if a["created_at"] < b["created_at"]:      # CONTRACT 2: ids are time-ordered
                self.assertLess(a["id"], b["id"], (a, b))

    def test_duplicate_sku_is_409(self):
        p = self.create()
        r = self.post_json(self.P, self.product(sku=p["sku"]))
        self.assertProblem(r, 409)
        # The first product is untouched.
        self.assertEqual(self.get(self.P + "/" + p["id"]).json()["name"], p["name"])


class TestValidation(CatalogCase):
    def assertInvalid(self, body, field):
        r = self.post_json(self.P, body)
        prob = self.assertProblem(r, 422)
        errs = prob.get("errors")
        self.assertIsInstance(errs, list, "422 without errors[]: %s" % prob)
        self.assertTrue(errs, prob)
        for e in errs:
            self.assertIn("field", e, e)
            self.assertIn("message", e, e)
        self.assertTrue(any(field in str(e["field"]) for e in errs),
                        "no error names %r: %s" % (field, errs))
        # Nothing was created.
        if isinstance(body.get("sku"), str) and isinstance(body.get("category"), str) \
                and body["category"]:
            self.assertNotIn(body["sku"], self.skus(category=body["category"]))

    def test_missing_required_fields(self):
        # CONTRACT 4 marks only currency, images, featured and initial_stock optional.
        for f in ("sku", "name", "description", "category", "price_cents"):
            with self.subTest(missing=f):
                body = self.product()
                del body[f]
                self.assertInvalid(body, f)

    def test_wrong_types(self):
        cases = [("price_cents", "1999"), ("price_cents", 19.99), ("price_cents", None),
                 ("price_cents", -1), ("name", 42), ("sku", ["x"]), ("featured", "yes"),
                 ("images", "https://img.example.com/a.png"), ("images", [1, 2]),
                 ("category", {"name": "x"})]
        for f, v in cases:
            with self.subTest(field=f, value=v):
                self.assertInvalid(self.product(**{f: v}), f)

    def test_bad_currency(self):
        for v in ("US", "DOLLARS", "", 840, "U$D"):
            with self.subTest(currency=v):
                self.assertInvalid(self.product(currency=v), "currency")

    def test_empty_strings_rejected(self):
        for f in ("sku", "name", "category"):
            with self.subTest(field=f):
                self.assertInvalid(self.product(**{f: ""}), f)

    def test_unknown_and_read_only_fields_on_create(self):
        self.assertInvalid(self.product(colour="red"), "colour")
        self.assertInvalid(self.product(id="01HZZZZZZZZZZZZZZZZZZZZZZZ"), "id")
        self.assertInvalid(self.product(created_at="2020-01-01T00:00:00Z"), "created_at")


class TestGetAndDelete(CatalogCase):
    def test_get_returns_product_with_etag(self):
        p = self.create()
        r = self.get(self.P + "/" + p["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), p)
        self.assertTrue(r.headers.get("ETag"), dict(r.headers))
        # Same representation, same tag.
        self.assertEqual(self.get(self.P + "/" + p["id"]).headers.get("ETag"), r.headers["ETag"])

    def test_get_unknown_is_404(self):
        for pid in ("01HZZZZZZZZZZZZZZZZZZZZZZZ", uniq("nope")):
            with self.subTest(id=pid):
                self.assertProblem(self.get(self.P + "/" + pid), 404)

    def test_delete_then_404_and_sku_reusable(self):
        p = self.create()
        r = self.delete(self.P + "/" + p["id"])
        self.assertStatus(r, 204)
        self.assertEqual(r.content, b"")
        self.assertProblem(self.get(self.P + "/" + p["id"]), 404)
        self.assertProblem(self.delete(self.P + "/" + p["id"]), 404)
        self.assertNotIn(p["sku"], self.skus(category=p["category"]))
        again = self.create(sku=p["sku"], category=p["category"])
        self.assertNotEqual(again["id"], p["id"])
        self.assertEqual(self.skus(category=p["category"]), [p["sku"]])


class TestPatch(CatalogCase):
    def test_merge_patch_with_matching_if_match(self):
        p = self.create(images=["https://img.example.com/a.png"], featured=True)
        tag = self.etag_of(p["id"])
        r = self.patch_json(self.P + "/" + p["id"], {"name": "Renamed", "price_cents": 2500},
                            headers={"If-Match": tag})
        self.assertStatus(r, 200)
        q = r.json()
        self.assertEqual(q["name"], "Renamed")
        self.assertEqual(q["price_cents"], 2500)
        # Merge patch: members not in the patch are unchanged.
        for k in ("id", "sku", "description", "category", "currency", "images", "featured",
                  "created_at"):
            self.assertEqual(q[k], p[k], k)
        self.assertRegex(q["updated_at"], RFC3339_UTC)
        self.assertGreaterEqual(q["updated_at"], p["updated_at"])
        new_tag = r.headers.get("ETag")
        self.assertTrue(new_tag, "PATCH 200 without ETag: %s" % dict(r.headers))
        self.assertNotEqual(new_tag, tag)
        g = self.get(self.P + "/" + p["id"])
        self.assertEqual(g.json(), q)
        self.assertEqual(g.headers.get("ETag"), new_tag)

    def test_merge_patch_null_removes_optional_member(self):
        p = self.create(images=["https://img.example.com/a.png"], featured=True)
        r = self.patch_json(self.P + "/" + p["id"], {"images": None, "featured": None})
        self.assertStatus(r, 200)
        q = r.json()
        # RFC 7386: null deletes the member; the product then shows the defaults again.
        self.assertEqual(q.get("images", []), [])
        self.assertIs(q.get("featured", False), False)

    def test_application_json_also_accepted(self):
        p = self.create()
        r = self.patch_json(self.P + "/" + p["id"], {"description": "plain json"},
                            content_type="application/json")
        self.assertStatus(r, 200)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json()["description"], "plain json")

    def test_stale_if_match_is_412_and_changes_nothing(self):
        p = self.create()
        old = self.etag_of(p["id"])
        self.assertStatus(self.patch_json(self.P + "/" + p["id"], {"name": "v2"},
                                          headers={"If-Match": old}), 200)
        r = self.patch_json(self.P + "/" + p["id"], {"name": "v3"}, headers={"If-Match": old})
        self.assertProblem(r, 412)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json()["name"], "v2")
        r = self.patch_json(self.P + "/" + p["id"], {"name": "v4"},
                            headers={"If-Match": '"certainly-not-the-tag"'})
        self.assertProblem(r, 412)

    def test_if_match_longer_than_the_envelope_allows_is_412(self):
        # MC_ENV_IF_MATCH_MAX is 128: a longer If-Match can match no ETag, and the edge says so
        # rather than sending an envelope every actor would refuse
        p = self.create()
        for n in (128, 129, 4000):
            r = self.patch_json(self.P + "/" + p["id"], {"name": "never"},
                                headers={"If-Match": '"' + "x" * (n - 2) + '"'})
            self.assertProblem(r, 412, "precondition_failed")
        self.assertEqual(self.get(self.P + "/" + p["id"]).json()["name"], p["name"])

    def test_read_only_fields_are_422(self):
        p = self.create()
        for body in ({"id": "other"}, {"created_at": "2020-01-01T00:00:00Z"}):
            with self.subTest(body=body):
                prob = self.assertProblem(self.patch_json(self.P + "/" + p["id"], body), 422)
                field = next(iter(body))
                self.assertTrue(any(field in str(e.get("field")) for e in prob.get("errors", [])),
                                prob)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json(), p)

    def test_unknown_field_is_422_with_errors(self):
        p = self.create()
        r = self.patch_json(self.P + "/" + p["id"], {"name": "ok", "colour": "red"})
        prob = self.assertProblem(r, 422)
        errs = prob.get("errors")
        self.assertIsInstance(errs, list, prob)
        self.assertTrue(any("colour" in str(e.get("field")) and e.get("message") for e in errs),
                        prob)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json()["name"], p["name"])

    def test_invalid_values_are_422(self):
        p = self.create()
        for body in ({"price_cents": -5}, {"price_cents": "10"}, {"name": ""},
                     {"currency": "dollars"}, {"name": None}):
            with self.subTest(body=body):
                self.assertProblem(self.patch_json(self.P + "/" + p["id"], body), 422)
        self.assertEqual(self.get(self.P + "/" + p["id"]).json(), p)

    def test_patch_unknown_product_is_404(self):
        self.assertProblem(self.patch_json(self.P + "/" + uniq("nope"), {"name": "x"}), 404)

    def test_patch_sku_to_existing_is_409(self):
        a, b = self.create(), self.create()
        self.assertProblem(self.patch_json(self.P + "/" + b["id"], {"sku": a["sku"]}), 409)


class TestList(CatalogCase):
    def test_q_matches_words_in_name_and_description_any_case(self):
        w1, w2, w3 = word(), word(), word()
        a = self.create(name="Red %s shoe" % w1, description="Comfortable %s leather" % w2)
        b = self.create(name="Blue %s" % w1.upper(), description="plain")
        c = self.create(name="Other", description="Made with %s, really." % w1.capitalize())
        self.create(name="Unrelated %s" % w3, description="nothing")
        self.assertEqual(self.skus(q=w1), sorted([a["sku"], b["sku"], c["sku"]]))  # name + desc
        self.assertEqual(self.skus(q=w1.upper()), self.skus(q=w1))                # any case
        self.assertEqual(self.skus(q=w2.capitalize()), [a["sku"]])                # description
        self.assertEqual(self.skus(q="%s %s" % (w1, w2)), [a["sku"]])             # all words
        self.assertEqual(self.skus(q="%s %s" % (w2, w3)), [])
        self.assertEqual(self.skus(q=word()), [])

    def test_category_filter(self):
        cat, other = uniq("cat"), uniq("cat")
        mine = sorted(self.create(category=cat)["sku"] for _ in range(3))
        self.create(category=other)
        self.assertEqual(self.skus(category=cat), mine)
        self.assertEqual(self.skus(category=uniq("cat")), [])

    def test_price_range_is_inclusive(self):
        cat = uniq("cat")
        by_price = {c: self.create(category=cat, price_cents=c)["sku"] for c in (100, 200, 300, 400)}
        self.assertEqual(self.skus(category=cat, min_price=200, max_price=300),
                         sorted([by_price[200], by_price[300]]))
        self.assertEqual(self.skus(category=cat, min_price=301),  sorted([by_price[400]]))
        self.assertEqual(self.skus(category=cat, max_price=199), sorted([by_price[100]]))
        self.assertEqual(self.skus(category=cat, min_price=401), [])

    def test_featured_filter(self):
        cat = uniq("cat")
        f = self.create(category=cat, featured=True)["sku"]
        n = self.create(category=cat, featured=False)["sku"]
        d = self.create(category=cat)["sku"]
        self.assertEqual(self.skus(category=cat, featured="true"), [f])
        self.assertEqual(self.skus(category=cat, featured="false"), sorted([n, d]))

    def test_filters_combine(self):
        cat, w = uniq("cat"), word()
        hit = self.create(category=cat, name="Lamp " + w, price_cents=500, featured=True)["sku"]
        self.create(category=cat, name="Lamp " + w, price_cents=5000, featured=True)
        self.create(category=cat, name="Lamp " + w, price_cents=500, featured=False)
        self.create(category=cat, name="Lamp", price_cents=500, featured=True)
        self.create(category=uniq("cat"), name="Lamp " + w, price_cents=500, featured=True)
        self.assertEqual(self.skus(category=cat, q=w, max_price=1000, featured="true"), [hit])

    def test_default_and_max_limit(self):
        cat = uniq("cat")
        for _ in range(25):
            self.create(category=cat)
        page = self.list(category=cat)
        self.assertEqual(len(page["items"]), 20)                # default 20
        self.assertIsNotNone(page["next_cursor"])
        page = self.list(category=cat, limit=100)
        self.assertEqual(len(page["items"]), 25)
        self.assertIsNone(page["next_cursor"])
        self.assertProblem(self.get(self.P + "?limit=101"), 422)
        self.assertProblem(self.get(self.P + "?limit=0"), 422)

    def test_cursor_pagination_visits_every_product_once(self):
        cat = uniq("cat")
        made = sorted(self.create(category=cat, price_cents=100 + i)["id"] for i in range(11))
        for limit in (1, 3, 4, 11, 20):
            with self.subTest(limit=limit):
                items, pages = self.list_all(category=cat, limit=limit)
                ids = [p["id"] for p in items]
                self.assertEqual(len(ids), len(set(ids)), "duplicates across pages: %s" % ids)
                self.assertEqual(sorted(ids), made)
                # ceil(11 / limit) pages, plus at most one empty last page.
                self.assertLessEqual(pages, -(-11 // limit) + 1)
                for p in items:
                    self.assertEqual(p["category"], cat)

    def test_pagination_with_q_filter(self):
        w = word()
        made = sorted(self.create(name="Item %s %d" % (w, i))["id"] for i in range(7))
        items, _ = self.list_all(q=w, limit=2)
        self.assertEqual(sorted(p["id"] for p in items), made)

    def test_bogus_cursor_is_400(self):
        for c in ("not-a-cursor", "AAAA", "%00%01"):
            with self.subTest(cursor=c):
                self.assertProblem(self.get(self.P + "?cursor=" + c), 400)

    def test_bad_query_parameters_are_rejected(self):
        for qs in ("min_price=abc", "max_price=-1", "featured=maybe", "limit=ten"):
            with self.subTest(query=qs):
                r = self.get(self.P + "?" + qs)
                self.assertIn(r.status_code, (400, 422), r.text)
                self.assertProblem(r, r.status_code)


class TestWriteAccess(CatalogCase):
    """CONTRACT 4: catalog writes are admin-only; anonymous 401 (with WWW-Authenticate: Bearer),
    a customer 403, and neither changes anything."""

    def test_anonymous_and_customer_writes_are_refused(self):
        p = self.create()
        customer = self.cluster.customer_headers()
        pid = self.P + "/" + p["id"]
        for who, auth in (("anonymous", None), ("customer", customer)):
            with self.subTest(who=who):
                body = self.product()
                rs = [self.call("POST", self.P, body, auth=auth),
                      self.call("PATCH", pid, {"name": "hijacked"}, auth=auth,
                                content_type="application/merge-patch+json"),
                      self.call("DELETE", pid, auth=auth)]
                for r in rs:
                    if who == "anonymous":
                        self.assertUnauthorized(r)
                    else:
                        self.assertProblem(r, 403)
                self.assertNotIn(body["sku"], self.skus(category=body["category"]))
                self.assertEqual(self.get(pid).json(), p)

    def test_reads_stay_public(self):
        p = self.create()
        for path in (self.P, self.P + "/" + p["id"], "/api/v1/categories"):
            with self.subTest(path=path):
                self.assertStatus(self.get(path), 200)


class TestCategories(CatalogCase):
    def counts(self):
        r = self.get("/api/v1/categories")
        self.assertStatus(r, 200)
        body = r.json()
        self.assertIsInstance(body, list, "CONTRACT 4: GET /categories -> [{name, product_count}]")
        for c in body:
            self.assertLessEqual({"name", "product_count"}, set(c), c)
            self.assertIsInstance(c["product_count"], int, c)
        names = [c["name"] for c in body]
        self.assertEqual(len(names), len(set(names)), "category listed twice: %s" % names)
        return {c["name"]: c["product_count"] for c in body}

    def test_counts_follow_creates_patches_and_deletes(self):
        a, b = uniq("cat"), uniq("cat")
        pa = [self.create(category=a) for _ in range(3)]
        pb = self.create(category=b)
        c = self.counts()
        self.assertEqual((c.get(a), c.get(b)), (3, 1))
        self.assertStatus(self.delete(self.P + "/" + pa[0]["id"]), 204)
        self.assertEqual(self.counts().get(a), 2)
        # Moving a product moves its count.
        self.assertStatus(self.patch_json(self.P + "/" + pa[1]["id"], {"category": b}), 200)
        c = self.counts()
        self.assertEqual((c.get(a), c.get(b)), (1, 2))
        # An emptied category reports 0 or disappears.
        self.assertStatus(self.delete(self.P + "/" + pa[2]["id"]), 204)
        self.assertEqual(self.counts().get(a, 0), 0)
        self.assertStatus(self.delete(self.P + "/" + pb["id"]), 204)
        self.assertEqual(self.counts().get(b), 1)


class TestSkuAcrossShards(CatalogCase):
    """A product lives on its id's shard and a SKU's claim on the SKU's home shard: a change of
    SKU claims the new one there before it commits and frees the old one before it answers."""

    def sku_of(self, pid):
        r = self.get(self.P + "/" + pid)
        self.assertStatus(r, 200)
        return r.json()["sku"]

    def test_concurrent_patches_to_one_new_sku_one_wins(self):
        headers = {"Content-Type": "application/merge-patch+json", **self.cluster.admin_headers()}
        for round_ in range(8):
            with self.subTest(round=round_):
                a = self.create(sku=sku_at())
                b = self.create(sku=sku_at(avoid=(home(a["sku"]),)))
                new = sku_at(avoid=(home(a["sku"]), home(b["sku"])))
                if shards("catalog") > 2:
                    # the two products, and the sku they race for, on three different shards
                    self.assertEqual(len({home(a["sku"]), home(b["sku"]), home(new)}), 3)
                barrier, out = threading.Barrier(2), {}

                def patch(p):
                    barrier.wait()
                    out[p["id"]] = requests.patch(self.url(self.P + "/" + p["id"]), headers=headers,
                                                  data=json.dumps({"sku": new}), timeout=10)
                threads = [threading.Thread(target=patch, args=(p,)) for p in (a, b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                statuses = sorted(r.status_code for r in out.values())
                self.assertEqual(statuses, [200, 409], {k: r.text for k, r in out.items()})
                winner = a if out[a["id"]].status_code == 200 else b
                loser = b if winner is a else a
                self.assertEqual(self.sku_of(winner["id"]), new)
                self.assertEqual(self.sku_of(loser["id"]), loser["sku"])
                # the sku is the winner's, whichever shard asks
                self.assertProblem(self.post_json(self.P, self.product(sku=new)), 409)
                self.assertProblem(self.patch_json(self.P + "/" + loser["id"], {"sku": new.lower()}), 409)

    def test_old_sku_is_free_once_the_patch_has_answered(self):
        s0 = sku_at()
        p = self.create(sku=s0)
        here = home(s0)                                   # p lives on s0's home
        s1 = sku_at(avoid=(here,))
        r = self.patch_json(self.P + "/" + p["id"], {"sku": s1})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["sku"], s1)
        self.assertEqual(self.create(sku=s0)["sku"], s0)  # freed on p's own shard
        self.assertProblem(self.post_json(self.P, self.product(sku=s1)), 409)
        # from s1 to s2: s1's claim is on another shard, freed there before the answer
        s2 = sku_at(avoid=(here, home(s1)))
        self.assertStatus(self.patch_json(self.P + "/" + p["id"], {"sku": s2}), 200)
        self.assertEqual(self.create(sku=s1.upper())["sku"], s1.upper())
        self.assertProblem(self.post_json(self.P, self.product(sku=s2)), 409)
        # and back to the first: taken by now
        self.assertProblem(self.patch_json(self.P + "/" + p["id"], {"sku": s0}), 409)
        self.assertEqual(self.sku_of(p["id"]), s2)
        # deleting p frees s2, wherever its claim lives
        self.assertStatus(self.delete(self.P + "/" + p["id"]), 204)
        self.assertEqual(self.create(sku=s2)["sku"], s2)

    def test_changing_only_the_case_of_a_sku_keeps_it(self):
        s0 = sku_at()
        p = self.create(sku=s0)
        r = self.patch_json(self.P + "/" + p["id"], {"sku": s0.upper()})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["sku"], s0.upper())
        self.assertProblem(self.post_json(self.P, self.product(sku=s0)), 409)


if __name__ == "__main__":
    unittest.main()
