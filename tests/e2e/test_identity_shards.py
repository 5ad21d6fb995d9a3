"""Identity in 16 shards (issue 12): a user lives on the shard of its case-folded email, with an
id drawn to fall there, so that shard alone decides whether an email is taken, signs its user in
and keeps its sessions; a refresh token's digest names the same shard; every shard signs with
keys the edge publishes; and whoever needs every admin asks every shard.

The cluster runs MERCATO_SHARDS=identity=16 whatever the environment says (the other services
keep one shard each, so that this test depends on nothing but identity's sharding). Shards are
computed here as the code computes them: FNV-1a 32 of the key, modulo 16.
"""

import hashlib
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ClusterTestCase, strong_password, wait_for  # noqa: E402
from identity_support import API, b64u, fetch_jwks, jwks_by_kid, split_token  # noqa: E402
import test_notifications as notify  # noqa: E402

SHARDS = 16
USERS = 40


def fnv1a32(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def shard_of(key):
    return fnv1a32(key.encode()) % SHARDS


def shard_of_email(email):
    return shard_of(email.lower())


def token_shard(refresh_token):
    """The shard a refresh token routes to: that of its digest's text."""
    return shard_of(b64u(hashlib.sha256(refresh_token.encode()).digest()))


def mixed_case(s, salt):
    return "".join(c.upper() if (i + salt) % 2 else c.lower() for i, c in enumerate(s))


def second_admin_email(first):
    """An admin email on another shard than the first admin's."""
    for i in range(1000):
        candidate = "shard-admin-%d@mercato.test" % i
        if shard_of_email(candidate) != shard_of_email(first):
            return candidate
    raise AssertionError("no email on another shard")


@unittest.skipUnless(notify.READY, notify.WHY)
class TestIdentityShards(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = notify.Sink(notify.free_port())
        cls.sink.start()
        cls.addClassCleanup(cls.sink.stop)
        cls.cluster = notify.Cluster(kafka=True, env={
            "MERCATO_SHARDS": "identity=%d" % SHARDS,
            "MERCATO_SMTP_URL": "smtp://127.0.0.1:%d" % cls.sink.port,
            "MERCATO_SMTP_RETRY_MS": "200"})
        cls.addClassCleanup(cls.cluster.cleanup)
        c = cls.cluster
        c.start_all()
        # a second admin, on another shard: the node restarted with another bootstrap admin
        cls.admins = [c.admin_email, second_admin_email(c.admin_email)]
        c.admin_headers()
        c.procs["node"].stop()
        c.env["MERCATO_ADMIN_EMAIL"], c.env["MERCATO_ADMIN_PASSWORD"] = cls.admins[1], "e2e-Shard-Admin-41c!"
        c.start("node")
        c.wait_ready()
        # 40 users, each email's case scrambled, on many shards
        tag = uuid.uuid4().hex[:8]
        cls.users = []
        for i in range(USERS):
            email = mixed_case("Shard.%s.%02d@Example.TEST" % (tag, i), i)
            password = strong_password()
            r = c.register(email=email, password=password, name="Shard %d" % i)
            cls.users.append(r)

    def test_users_live_on_their_emails_shard(self):
        shards = set()
        for p in self.users:
            self.assertEqual(shard_of(p.user["id"]), shard_of_email(p.email),
                             "%s got an id on another shard than its email's" % p.email)
            self.assertEqual(p.user["email"], p.email)
            shards.add(shard_of(p.user["id"]))
        self.assertGreaterEqual(len(shards), 8, "40 users should spread over the shards: %s" % shards)

    def test_an_email_in_another_case_is_taken(self):
        for i, p in enumerate(self.users):
            for other in (p.email.swapcase(), p.email.lower(), p.email.upper()):
                r = self.call("POST", API + "/auth/register",
                              {"email": other, "password": strong_password(), "name": "Again"})
                self.assertProblem(r, 409, "duplicate_email")
        # the admins too: they were made at start on their own shards
        for email in self.admins:
            r = self.call("POST", API + "/auth/register",
                          {"email": email.upper(), "password": strong_password(), "name": "Admin?"})
            self.assertProblem(r, 409, "duplicate_email")

    def test_sign_in_refresh_and_sign_out_on_every_shard(self):
        jwks = jwks_by_kid(fetch_jwks(self.cluster.base_url))
        for p in self.users:
            r = self.call("POST", API + "/auth/login", {"email": p.email.swapcase(), "password": p.password})
            self.assertStatus(r, 200)
            tokens = r.json()
            home = shard_of(p.user["id"])
            head, claims, _ = split_token(tokens["access_token"])
            self.assertEqual(claims["sub"], p.user["id"])
            self.assertIn(head["kid"], jwks, "the edge publishes the key every shard signs with")
            self.assertEqual(token_shard(tokens["refresh_token"]), home)
            me = self.call("GET", API + "/users/me", auth={"Authorization": "Bearer " + tokens["access_token"]})
            self.assertStatus(me, 200)
            self.assertEqual(me.json()["id"], p.user["id"])
            # rotation stays on the shard; the rotated token reused ends the family
            r = self.call("POST", API + "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
            self.assertStatus(r, 200)
            fresh = r.json()
            self.assertEqual(token_shard(fresh["refresh_token"]), home)
            self.assertEqual(split_token(fresh["access_token"])[1]["sub"], p.user["id"])
            r = self.call("POST", API + "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
            self.assertProblem(r, 401, "refresh_token_reused")
            r = self.call("POST", API + "/auth/refresh", {"refresh_token": fresh["refresh_token"]})
            self.assertProblem(r, 401, "invalid_refresh_token")
            # a fresh session, signed out
            r = self.call("POST", API + "/auth/login", {"email": p.email, "password": p.password})
            self.assertStatus(r, 200)
            token = r.json()["refresh_token"]
            self.assertStatus(self.call("POST", API + "/auth/logout", {"refresh_token": token}), 204)
            r = self.call("POST", API + "/auth/refresh", {"refresh_token": token})
            self.assertProblem(r, 401, "invalid_refresh_token")

    def test_made_up_refresh_tokens_are_unknown_wherever_they_route(self):
        seen = set()
        for i in range(64):
            token = b64u(os.urandom(32)) if i % 2 else "x" * (i + 1)
            seen.add(token_shard(token))
            r = self.call("POST", API + "/auth/refresh", {"refresh_token": token})
            self.assertProblem(r, 401, "invalid_refresh_token")
            self.assertStatus(self.call("POST", API + "/auth/logout", {"refresh_token": token}), 204)
        self.assertGreater(len(seen), 8)

    def test_the_throttle_counts_an_email_in_any_case(self):
        p = self.users[0]
        for i in range(5):
            r = self.call("POST", API + "/auth/login",
                          {"email": mixed_case(p.email, i), "password": "wrong-" + p.password})
            self.assertProblem(r, 401, "invalid_credentials")
        r = self.call("POST", API + "/auth/login", {"email": p.email.upper(), "password": p.password})
        self.assertStatus(r, 429)

    def test_a_rotation_through_any_shard_is_every_shards(self):
        r = self.call("POST", API + "/admin/keys/rotate", auth=self.cluster.admin_headers())
        self.assertStatus(r, 200)
        kid = r.json()["kid"]
        # the edge reloads the keys of every shard as the rotation passes (right after answering)
        wait_for(lambda: kid in jwks_by_kid(fetch_jwks(self.cluster.base_url)), 5, what="the new key in the JWKS")
        for p in self.users[1:]:
            r = self.call("POST", API + "/auth/login", {"email": p.email, "password": p.password})
            self.assertStatus(r, 200)
            self.assertEqual(split_token(r.json()["access_token"])[0]["kid"], kid,
                             "the shard of %s signs with the rotated key" % p.email)

    def test_low_stock_mails_the_admins_of_every_shard(self):
        self.assertNotEqual(shard_of_email(self.admins[0]), shard_of_email(self.admins[1]))
        admin = self.cluster.admin_headers()
        body = {"sku": "IS-" + uuid.uuid4().hex[:12], "name": "Sharded thing", "description": "d",
                "category": "shards", "price_cents": 500, "initial_stock": 100}
        r = self.call("POST", API + "/products", body, auth=admin)
        self.assertStatus(r, 201)
        pid = r.json()["id"]
        wait_for(lambda: self.get(API + "/inventory/" + pid).status_code == 200, 20,
                 what="the stock record of " + pid)
        r = self.call("POST", API + "/inventory/%s/adjustments" % pid, {"delta": -91, "reason": "shrinkage"},
                      auth=admin)
        self.assertStatus(r, 200)
        subject = "Low stock: product " + pid
        ids = set()
        for address in self.admins:
            [mail] = self.sink.wait_to(address, lambda m: m["Subject"] == subject, what="the alert")
            ids.add(mail["Message-ID"])
        self.assertEqual(len(ids), 2, "one Message-ID per admin: %s" % ids)


if __name__ == "__main__":
    unittest.main()
