"""CONTRACT 3 (identity) through HTTP: register, login, throttling, refresh rotation and reuse
detection, logout, profile, password change, addresses, admin users, JWKS, key rotation and
persistence. Tokens are checked by an independent JWT implementation (Debian's python3-jwt).

One cluster per class; every test registers its own users (unique emails), so tests may run in
any order and alone. Classes that restart processes or rotate keys have a cluster of their own.
"""

import os
import re
import stat
import sys
import time
import unittest
import uuid

import jwt
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, strong_password, unique_email  # noqa: E402
from identity_support import (API, ACCESS_TTL, ISSUER, IdentityCase, b64u_json,  # noqa: E402
                              find_secret_keys, jwks_by_kid, private_key_files, public_jwk,
                              split_token, thumbprint, verify_with_jwks)

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
USER_FIELDS = {"id", "email", "name", "role", "created_at"}
ADDRESS_FIELDS = {"id", "name", "line1", "line2", "city", "postal_code", "country",
                  "is_default", "created_at"}
# Present in every published common-password list (and long enough to pass the length rule).
COMMON_PASSWORDS = ("password", "12345678", "123456789", "password1", "qwertyuiop", "iloveyou",
                    "11111111", "abc12345")

REGISTER = API + "/auth/register"
LOGIN = API + "/auth/login"
REFRESH = API + "/auth/refresh"
LOGOUT = API + "/auth/logout"
ME = API + "/users/me"
PASSWORD = API + "/users/me/password"
ADDRESSES = API + "/users/me/addresses"
ADMIN_USERS = API + "/admin/users"
ROTATE = API + "/admin/keys/rotate"


def address(**over):
    body = {"name": "Ada Lovelace", "line1": "1 Analytical Way", "line2": "Flat 2",
            "city": "Berlin", "postal_code": "10115", "country": "DE"}
    body.update(over)
    return body


class TestRegister(IdentityCase):
    def assertInvalid(self, r, field):
        prob = self.assertProblem(r, 422)
        errs = prob.get("errors")
        self.assertIsInstance(errs, list, "422 without errors[]: %s" % prob)
        for e in errs:
            self.assertIn("field", e, e)
            self.assertIn("message", e, e)
        self.assertTrue(any(field in str(e.get("field")) for e in errs),
                        "no error names %r: %s" % (field, errs))
        return prob

    def assertNotRegistered(self, email, password):
        r = self.login_raw(email, password)
        if r.status_code == 422 and not 8 <= len(password) <= 128:
            return           # login refuses an impossible password before looking anything up
        self.assertUnauthorized(r, "a refused registration must not create the user")

    def test_register_returns_201_user(self):
        email = unique_email("reg")
        r = self.call("POST", REGISTER, {"email": email, "password": strong_password(),
                                         "name": "Grace Hopper"})
        self.assertStatus(r, 201)
        self.assertNoSecrets(r)
        u = r.json()
        self.assertEqual(set(u) & USER_FIELDS, USER_FIELDS, u)
        self.assertEqual(u["email"].lower(), email.lower())
        self.assertEqual(u["name"], "Grace Hopper")
        self.assertEqual(u["role"], "customer")
        self.assertIsInstance(u["id"], str)
        self.assertTrue(u["id"])
        self.assertRegex(u["created_at"], RFC3339_UTC)

    def test_ids_are_distinct(self):
        ids = [self.register().id for _ in range(3)]
        self.assertEqual(len(set(ids)), 3, ids)

    def test_duplicate_email_in_any_case_is_409(self):
        local = "dup-" + uuid.uuid4().hex[:10]
        first = self.register(email=local + "@example.test")
        for variant in (local + "@example.test", local.upper() + "@EXAMPLE.TEST",
                        local.capitalize() + "@Example.Test"):
            with self.subTest(email=variant):
                pw = strong_password()
                r = self.call("POST", REGISTER, {"email": variant, "password": pw, "name": "x"})
                self.assertProblem(r, 409, "duplicate_email")
                self.assertNotRegistered(variant, pw)
        # The original account is untouched.
        self.login(first)
        self.assertEqual(self.me(first).json()["id"], first.id)

    def test_password_length_bounds(self):
        for n, ok in ((7, False), (8, True), (128, True), (129, False)):
            with self.subTest(length=n):
                pw = (uuid.uuid4().hex * 9)[:n]
                email = unique_email("len")
                r = self.call("POST", REGISTER, {"email": email, "password": pw, "name": "x"})
                if ok:
                    self.assertStatus(r, 201)
                    self.assertStatus(self.login_raw(email, pw), 200)
                else:
                    self.assertInvalid(r, "password")
                    self.assertNotRegistered(email, pw)

    def test_password_length_counts_characters_not_bytes(self):
        # "8 to 128 characters": 7 two-byte characters (14 bytes) are too short; 128 of them
        # (256 bytes) are fine.
        alphabet = "äöüßéèçñ"
        for n, ok in ((7, False), (8, True), (128, True), (129, False)):
            with self.subTest(chars=n):
                pw = "".join(alphabet[(i * 5 + n) % len(alphabet)] for i in range(n))
                email = unique_email("utf")
                r = self.call("POST", REGISTER, {"email": email, "password": pw, "name": "x"})
                if ok:
                    self.assertStatus(r, 201)
                    self.assertStatus(self.login_raw(email, pw), 200)
                else:
                    self.assertInvalid(r, "password")

    def test_common_passwords_are_rejected(self):
        for pw in COMMON_PASSWORDS:
            with self.subTest(password=pw):
                email = unique_email("common")
                r = self.call("POST", REGISTER, {"email": email, "password": pw, "name": "x"})
                self.assertInvalid(r, "password")
                self.assertNotRegistered(email, pw)

    def test_password_equal_to_email_is_rejected(self):
        email = unique_email("same")
        r = self.call("POST", REGISTER, {"email": email, "password": email, "name": "x"})
        self.assertInvalid(r, "password")
        self.assertNotRegistered(email, email)

    def test_missing_fields(self):
        for f in ("email", "password", "name"):
            with self.subTest(missing=f):
                body = {"email": unique_email(), "password": strong_password(), "name": "x"}
                del body[f]
                self.assertInvalid(self.call("POST", REGISTER, body), f)

    def test_invalid_email(self):
        for bad in ("", "no-at-sign", "a@", "@example.test", "a b@example.test", 42, None,
                    ["a@example.test"]):
            with self.subTest(email=bad):
                r = self.call("POST", REGISTER, {"email": bad, "password": strong_password(),
                                                 "name": "x"})
                self.assertInvalid(r, "email")

    def test_wrong_types(self):
        for f, v in (("password", 12345678901), ("password", None), ("name", 42),
                     ("name", None), ("name", "")):
            with self.subTest(field=f, value=v):
                body = {"email": unique_email(), "password": strong_password(), "name": "x"}
                body[f] = v
                self.assertInvalid(self.call("POST", REGISTER, body), f)

    def test_no_mass_assignment(self):
        # Unknown and read-only fields are 422: a client cannot make itself an admin.
        for f, v in (("role", "admin"), ("id", "01HZZZZZZZZZZZZZZZZZZZZZZZ"),
                     ("created_at", "2020-01-01T00:00:00Z"), ("is_admin", True),
                     ("favourite_colour", "red")):
            with self.subTest(field=f):
                email, pw = unique_email("mass"), strong_password()
                r = self.call("POST", REGISTER, {"email": email, "password": pw, "name": "x",
                                                 f: v})
                self.assertInvalid(r, f)
                self.assertNotRegistered(email, pw)

    def test_malformed_and_non_json_bodies(self):
        r = self.call("POST", REGISTER, data='{"email": ')
        self.assertProblem(r, 400)
        r = self.call("POST", REGISTER, data="email=a@b.c&password=x", content_type="text/plain")
        self.assertProblem(r, 415)


class TestLogin(IdentityCase):
    def test_login_returns_a_token_pair_that_python_jwt_verifies(self):
        p = self.register()
        t0 = time.time()
        r = self.login_raw(p.email, p.password)
        self.assertStatus(r, 200)
        tokens = self.assertTokenPair(r)
        header, _, _ = split_token(tokens["access_token"])
        self.assertEqual(header.get("alg"), "RS256", header)
        self.assertTrue(header.get("kid"), "access token header without kid: %s" % header)
        jwks = self.jwks()
        self.assertIn(header["kid"], jwks_by_kid(jwks))
        claims = verify_with_jwks(tokens["access_token"], jwks)
        self.assertEqual(claims["iss"], ISSUER)
        self.assertEqual(claims["sub"], p.id)
        self.assertEqual(claims["role"], "customer")
        self.assertIsInstance(claims["iat"], int)
        self.assertIsInstance(claims["exp"], int)
        self.assertEqual(claims["exp"] - claims["iat"], ACCESS_TTL, claims)
        self.assertLess(abs(claims["iat"] - t0), 60, "iat is not now: %s" % claims)
        self.assertIsInstance(claims.get("jti"), str, claims)
        self.assertTrue(claims["jti"])
        # And the token works at the edge.
        me = self.me(tokens["access_token"])
        self.assertStatus(me, 200)
        self.assertEqual(me.json()["id"], p.id)

    def test_each_login_is_a_new_session(self):
        p = self.register()
        a = self.login(p)
        b = self.login(p)
        self.assertNotEqual(a["refresh_token"], b["refresh_token"])
        ja = jwt.decode(a["access_token"], options={"verify_signature": False})["jti"]
        jb = jwt.decode(b["access_token"], options={"verify_signature": False})["jti"]
        self.assertNotEqual(ja, jb, "jti must be unique per token")

    def test_login_email_is_case_insensitive(self):
        # Emails are unique case-insensitively, so the account is found in any case.
        p = self.register(email=unique_email("Case"))
        r = self.login_raw(p.email.upper(), p.password)
        self.assertStatus(r, 200)
        claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
        self.assertEqual(claims["sub"], p.id)

    def test_unknown_email_and_wrong_password_give_the_same_reply(self):
        p = self.register()
        wrong = self.login_raw(p.email, p.password + "x")
        unknown = self.login_raw(unique_email("ghost"), p.password)
        replies = []
        for what, r in (("wrong password", wrong), ("unknown email", unknown)):
            with self.subTest(case=what):
                prob = self.assertUnauthorized(r, what)
                self.assertEqual(prob["code"], "invalid_credentials", prob)
                self.assertNoSecrets(r)
                replies.append({k: prob.get(k) for k in ("type", "title", "status", "detail",
                                                         "code", "errors")})
        self.assertEqual(replies[0], replies[1], "the replies tell unknown email from wrong "
                                                 "password apart")
        self.assertEqual(wrong.headers.get("WWW-Authenticate"),
                         unknown.headers.get("WWW-Authenticate"))

    def test_wrong_password_variants(self):
        p = self.register()
        for pw in (p.password.upper(), p.password[:-1], p.password + " ", ""):
            with self.subTest(password=pw):
                r = self.login_raw(p.email, pw)
                if r.status_code == 422 and pw == "":
                    continue     # an empty password may be a validation error
                prob = self.assertUnauthorized(r)
                self.assertEqual(prob["code"], "invalid_credentials")

    def test_login_validation(self):
        for body in ({"email": unique_email()}, {"password": "whatever-1234"},
                     {"email": 42, "password": "whatever-1234"},
                     {"email": unique_email(), "password": "whatever-1234", "remember": True}):
            with self.subTest(body=body):
                self.assertProblem(self.call("POST", LOGIN, body), 422)
        self.assertProblem(self.call("POST", LOGIN, data="{"), 400)

    def test_bootstrap_admin_can_log_in_as_admin(self):
        admin = self.cluster.admin_principal()
        claims = verify_with_jwks(admin.access_token, self.jwks())
        self.assertEqual(claims["role"], "admin")
        me = self.me(admin)
        self.assertStatus(me, 200)
        self.assertEqual(me.json()["role"], "admin")
        self.assertEqual(me.json()["email"].lower(), self.cluster.admin_email.lower())
        self.assertEqual(me.json()["id"], claims["sub"])


class TestThrottle(IdentityCase):
    def assertThrottled(self, r):
        prob = self.assertProblem(r, 429)
        ra = r.headers.get("Retry-After", "")
        self.assertRegex(ra, r"^\d+$", "429 without delay-seconds Retry-After: %s" %
                         dict(r.headers))
        self.assertGreater(int(ra), 0)
        self.assertLessEqual(int(ra), 15 * 60, "Retry-After beyond the 15 min window")
        return prob

    def test_sixth_attempt_after_five_failures_is_429_even_with_the_right_password(self):
        p = self.register()
        other = self.register()
        for i in range(5):
            r = self.login_raw(p.email, "wrong-%d-%s" % (i, uuid.uuid4().hex))
            prob = self.assertUnauthorized(r, "failure %d of 5" % (i + 1))
            self.assertEqual(prob["code"], "invalid_credentials")
        self.assertThrottled(self.login_raw(p.email, p.password))
        self.assertThrottled(self.login_raw(p.email, "still-wrong-" + uuid.uuid4().hex))
        # Per email: another account is not affected.
        self.assertStatus(self.login_raw(other.email, other.password), 200)

    def test_unknown_email_is_throttled_the_same_way(self):
        ghost = unique_email("ghost")
        for i in range(5):
            self.assertUnauthorized(self.login_raw(ghost, "wrong-%d-%s" % (i, uuid.uuid4().hex)))
        self.assertThrottled(self.login_raw(ghost, "wrong-again-" + uuid.uuid4().hex))

    def test_failures_count_per_email_in_any_case(self):
        p = self.register(email=unique_email("thr"))
        variants = [p.email, p.email.upper(), p.email.capitalize(), p.email.upper(), p.email]
        for i, e in enumerate(variants):
            self.assertUnauthorized(self.login_raw(e, "wrong-%d-%s" % (i, uuid.uuid4().hex)))
        self.assertThrottled(self.login_raw(p.email, p.password))

    def test_four_failures_do_not_lock_out(self):
        p = self.register()
        for i in range(4):
            self.assertUnauthorized(self.login_raw(p.email, "wrong-%d" % i + uuid.uuid4().hex))
        self.assertStatus(self.login_raw(p.email, p.password), 200)


class TestRefresh(IdentityCase):
    def test_refresh_returns_a_new_pair_and_rotates(self):
        p = self.customer()
        first = p.tokens
        r = self.refresh_raw(first["refresh_token"])
        self.assertStatus(r, 200)
        second = self.assertTokenPair(r)
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        claims = verify_with_jwks(second["access_token"], self.jwks())
        self.assertEqual(claims["sub"], p.id)
        self.assertEqual(claims["role"], "customer")
        self.assertStatus(self.me(second["access_token"]), 200)
        # The new refresh token works once more.
        r = self.refresh_raw(second["refresh_token"])
        self.assertStatus(r, 200)
        self.assertTokenPair(r)

    def test_reusing_a_rotated_token_revokes_the_family(self):
        p = self.customer()
        old = p.tokens["refresh_token"]
        r = self.refresh_raw(old)
        self.assertStatus(r, 200)
        newest = r.json()["refresh_token"]
        self.assertUnauthorized(self.refresh_raw(old), "reuse of a rotated refresh token")
        self.assertUnauthorized(self.refresh_raw(newest),
                                "the newest token of a family whose old token was reused")
        # The user can still log in and start a new family.
        self.login(p)
        self.assertStatus(self.refresh_raw(p.refresh_token), 200)

    def test_reuse_deep_in_a_chain_revokes_the_newest(self):
        p = self.customer()
        chain = [p.tokens["refresh_token"]]
        for _ in range(3):
            r = self.refresh_raw(chain[-1])
            self.assertStatus(r, 200)
            chain.append(r.json()["refresh_token"])
        self.assertEqual(len(set(chain)), len(chain))
        self.assertUnauthorized(self.refresh_raw(chain[1]))
        self.assertUnauthorized(self.refresh_raw(chain[-1]))

    def test_reuse_revokes_only_that_family(self):
        p = self.register()
        s1 = self.login(p)
        s2 = self.login(p)          # a second device: a family of its own
        r = self.refresh_raw(s1["refresh_token"])
        self.assertStatus(r, 200)
        self.assertUnauthorized(self.refresh_raw(s1["refresh_token"]))
        self.assertUnauthorized(self.refresh_raw(r.json()["refresh_token"]))
        self.assertStatus(self.refresh_raw(s2["refresh_token"]), 200)

    def test_bad_refresh_tokens_are_401(self):
        p = self.customer()
        for bad in ("garbage", p.refresh_token + "x", p.refresh_token[:-1]):
            with self.subTest(token=bad[:40]):
                self.assertUnauthorized(self.refresh_raw(bad))
        for name, bad in (("access token", p.access_token), ("4000 chars", "x" * 4000)):
            with self.subTest(token=name):
                r = self.refresh_raw(bad)    # long ones may also be refused by a length rule
                if r.status_code == 422:
                    self.assertProblem(r, 422)
                else:
                    self.assertUnauthorized(r)
        # None of that harmed the real token (no family is revoked by a token it never issued).
        self.assertStatus(self.refresh_raw(p.refresh_token), 200)

    def test_refresh_validation(self):
        for body in ({}, {"refresh_token": 42}, {"refresh_token": None},
                     {"refresh_token": "abc", "extra": 1}):
            with self.subTest(body=body):
                self.assertProblem(self.call("POST", REFRESH, body), 422)


class TestLogout(IdentityCase):
    def test_logout_is_204_and_the_token_no_longer_refreshes(self):
        p = self.register()
        s1 = self.login(p)
        s2 = self.login(p)
        r = self.call("POST", LOGOUT, {"refresh_token": s1["refresh_token"]}, auth=s1["access_token"])
        self.assertStatus(r, 204)
        self.assertEqual(r.content, b"")
        self.assertUnauthorized(self.refresh_raw(s1["refresh_token"]))
        # Only that session ended.
        self.assertStatus(self.refresh_raw(s2["refresh_token"]), 200)

    def test_logout_after_rotation_ends_the_family(self):
        p = self.customer()
        r = self.refresh_raw(p.refresh_token)
        self.assertStatus(r, 200)
        current = r.json()["refresh_token"]
        self.assertStatus(self.call("POST", LOGOUT, {"refresh_token": current}), 204)
        self.assertUnauthorized(self.refresh_raw(current))

    def test_logout_validation(self):
        p = self.customer()
        for body in ({}, {"refresh_token": 42}, {"refresh_token": "abc", "extra": 1}):
            with self.subTest(body=body):
                self.assertProblem(self.call("POST", LOGOUT, body, auth=p), 422)
        self.assertStatus(self.refresh_raw(p.refresh_token), 200)


class TestMe(IdentityCase):
    def test_get_me(self):
        p = self.customer(name="Katherine Johnson")
        r = self.me(p)
        self.assertStatus(r, 200)
        self.assertNoSecrets(r)
        u = r.json()
        self.assertEqual(set(u) & USER_FIELDS, USER_FIELDS, u)
        self.assertEqual(u, {**u, **{k: p.user[k] for k in USER_FIELDS}})
        self.assertEqual(u["name"], "Katherine Johnson")
        self.assertTrue(r.headers.get("ETag"), "CONTRACT 2: single-resource GET carries ETag")

    def test_anonymous_is_401_with_www_authenticate(self):
        self.assertUnauthorized(self.call("GET", ME))
        self.assertUnauthorized(self.call("PATCH", ME, {"name": "x"}))
        self.assertUnauthorized(self.call("PUT", PASSWORD, {"current_password": "a" * 10,
                                                            "new_password": "b" * 10}))

    def test_patch_name(self):
        p = self.customer()
        r = self.call("PATCH", ME, {"name": "Renamed Person"}, auth=p)
        self.assertStatus(r, 200)
        self.assertNoSecrets(r)
        self.assertEqual(r.json()["name"], "Renamed Person")
        self.assertEqual(r.json()["id"], p.id)
        self.assertEqual(self.me(p).json()["name"], "Renamed Person")

    def test_patch_read_only_and_unknown_fields_are_422(self):
        p = self.customer()
        before = self.me(p).json()
        for f, v in (("role", "admin"), ("email", unique_email("steal")), ("id", "other-id"),
                     ("created_at", "2020-01-01T00:00:00Z"), ("password", strong_password()),
                     ("nickname", "x")):
            with self.subTest(field=f):
                r = self.call("PATCH", ME, {"name": "Should Not Apply", f: v}, auth=p)
                prob = self.assertProblem(r, 422)
                self.assertTrue(any(f in str(e.get("field")) for e in prob.get("errors", [])),
                                "no error names %r: %s" % (f, prob))
        self.assertEqual(self.me(p).json(), before, "a refused PATCH changed the user")
        # Still a customer, as the next token says too.
        self.login(p)
        self.assertEqual(verify_with_jwks(p.access_token, self.jwks())["role"], "customer")

    def test_patch_invalid_name_is_422(self):
        p = self.customer()
        for v in ("", None, 42, ["x"]):
            with self.subTest(name=v):
                self.assertProblem(self.call("PATCH", ME, {"name": v}, auth=p), 422)

    def test_stale_if_match_is_412(self):
        p = self.customer()
        tag = self.me(p).headers.get("ETag")
        self.assertTrue(tag)
        self.assertStatus(self.call("PATCH", ME, {"name": "v2"}, auth=p,
                                    headers={"If-Match": tag}), 200)
        r = self.call("PATCH", ME, {"name": "v3"}, auth=p, headers={"If-Match": tag})
        self.assertProblem(r, 412)
        self.assertEqual(self.me(p).json()["name"], "v2")


class TestPasswordChange(IdentityCase):
    def change(self, p, current, new):
        return self.call("PUT", PASSWORD, {"current_password": current, "new_password": new},
                         auth=p)

    def test_change_revokes_refresh_tokens_and_swaps_passwords(self):
        p = self.register()
        s1 = self.login(p)
        s2 = self.login(p)
        r2 = self.refresh_raw(s2["refresh_token"])      # a rotated family too
        self.assertStatus(r2, 200)
        new = strong_password()
        r = self.change(s1["access_token"], p.password, new)
        self.assertStatus(r, 204)
        self.assertEqual(r.content, b"")
        self.assertUnauthorized(self.refresh_raw(s1["refresh_token"]),
                                "refresh token from before the password change")
        self.assertUnauthorized(self.refresh_raw(r2.json()["refresh_token"]),
                                "refresh token of another session from before the change")
        self.assertUnauthorized(self.login_raw(p.email, p.password), "the old password")
        r = self.login_raw(p.email, new)
        self.assertStatus(r, 200)
        self.assertStatus(self.refresh_raw(r.json()["refresh_token"]), 200,
                          "tokens issued after the change work")

    def test_wrong_current_password_changes_nothing(self):
        p = self.customer()
        new = strong_password()
        r = self.change(p, "not-" + p.password, new)
        self.assertIn(r.status_code, (401, 422), r.text[:300])
        self.assertProblem(r, r.status_code)
        if r.status_code == 401:
            self.assertUnauthorized(r)
        self.assertStatus(self.refresh_raw(p.refresh_token), 200, "tokens survive a refused change")
        self.assertUnauthorized(self.login_raw(p.email, new))
        self.assertStatus(self.login_raw(p.email, p.password), 200)

    def test_new_password_policy(self):
        p = self.customer()
        for bad in ("short1!", "x" * 129, "password", "12345678", p.email):
            with self.subTest(new_password=bad[:20]):
                r = self.change(p, p.password, bad)
                prob = self.assertProblem(r, 422)
                self.assertTrue(any("new_password" in str(e.get("field")) or
                                    "password" == str(e.get("field"))
                                    for e in prob.get("errors", [])), prob)
        self.assertStatus(self.login_raw(p.email, p.password), 200)

    def test_validation(self):
        p = self.customer()
        for body in ({"new_password": strong_password()}, {"current_password": p.password},
                     {"current_password": p.password, "new_password": strong_password(),
                      "role": "admin"}):
            with self.subTest(body=sorted(body)):
                r = self.call("PUT", PASSWORD, body, auth=p)
                self.assertProblem(r, 422)
        self.assertStatus(self.login_raw(p.email, p.password), 200)


class TestAddresses(IdentityCase):
    def add(self, p, expect=201, **over):
        r = self.call("POST", ADDRESSES, address(**over), auth=p)
        self.assertStatus(r, expect)
        return r.json() if expect == 201 else r

    def addresses(self, p, **params):
        items, cursor = [], None
        for _ in range(50):
            q = dict(params)
            if cursor:
                q["cursor"] = cursor
            r = self.call("GET", ADDRESSES, auth=p, params=q)
            self.assertStatus(r, 200)
            page = r.json()
            self.assertIsInstance(page.get("items"), list, page)
            self.assertIn("next_cursor", page, page)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        self.fail("address pagination does not terminate")

    def test_create_returns_201_with_all_fields_and_first_is_default(self):
        p = self.customer()
        body = address()
        r = self.call("POST", ADDRESSES, body, auth=p)
        self.assertStatus(r, 201)
        self.assertNoSecrets(r)
        a = r.json()
        self.assertEqual(set(a) & ADDRESS_FIELDS, ADDRESS_FIELDS, a)
        for k in ("name", "line1", "line2", "city", "postal_code", "country"):
            self.assertEqual(a[k], body[k], k)
        self.assertIs(a["is_default"], True, "the first address is the default")
        self.assertRegex(a["created_at"], RFC3339_UTC)
        self.assertEqual(self.addresses(p), [a])

    def test_exactly_one_default(self):
        p = self.customer()
        a1 = self.add(p)
        a2 = self.add(p, city="Hamburg")
        self.assertIs(a2["is_default"], False, "a later address is not default unless asked")
        self.assertEqual([a["id"] for a in self.addresses(p) if a["is_default"]], [a1["id"]],
                         "adding a non-default address must leave the first one the default")
        a3 = self.add(p, city="Munich", is_default=True)
        self.assertIs(a3["is_default"], True)
        items = {a["id"]: a for a in self.addresses(p)}
        self.assertEqual(set(items), {a1["id"], a2["id"], a3["id"]})
        self.assertEqual([i for i, a in items.items() if a["is_default"]], [a3["id"]],
                         "exactly one default, the newest one asked for")
        self.add(p, city="Cologne", is_default=False)
        self.assertEqual([i for i, a in ((a["id"], a) for a in self.addresses(p))
                          if a["is_default"]], [a3["id"]])

    def test_line2_is_optional(self):
        p = self.customer()
        body = address()
        del body["line2"]
        r = self.call("POST", ADDRESSES, body, auth=p)
        self.assertStatus(r, 201)
        self.assertIn(r.json().get("line2"), (None, ""), r.json())

    def test_list_pagination(self):
        p = self.customer()
        made = sorted(self.add(p, city="City %d" % i)["id"] for i in range(5))
        items = self.addresses(p, limit=2)
        ids = [a["id"] for a in items]
        self.assertEqual(len(ids), len(set(ids)), ids)
        self.assertEqual(sorted(ids), made)
        r = self.call("GET", ADDRESSES, auth=p, params={"limit": 2})
        self.assertEqual(len(r.json()["items"]), 2)
        self.assertIsNotNone(r.json()["next_cursor"])
        self.assertProblem(self.call("GET", ADDRESSES, auth=p, params={"limit": 101}), 422)

    def test_validation(self):
        p = self.customer()
        cases = [("country", "XX"), ("country", "germany"), ("country", "D"), ("country", 49),
                 ("country", ""), ("is_default", "yes"), ("name", ""), ("line1", None),
                 ("city", 5), ("postal_code", ["10115"]), ("id", "x"),
                 ("created_at", "2020-01-01T00:00:00Z"), ("user_id", "someone"),
                 ("colour", "red")]
        for f, v in cases:
            with self.subTest(field=f, value=v):
                r = self.call("POST", ADDRESSES, address(**{f: v}), auth=p)
                prob = self.assertProblem(r, 422)
                self.assertTrue(any(f in str(e.get("field")) for e in prob.get("errors", [])),
                                "no error names %r: %s" % (f, prob))
        for f in ("name", "line1", "city", "postal_code", "country"):
            with self.subTest(missing=f):
                body = address()
                del body[f]
                self.assertProblem(self.call("POST", ADDRESSES, body, auth=p), 422)
        self.assertEqual(self.addresses(p), [], "refused addresses were stored")

    def test_delete_own_address(self):
        p = self.customer()
        a1, a2 = self.add(p), self.add(p)
        r = self.call("DELETE", ADDRESSES + "/" + a2["id"], auth=p)
        self.assertStatus(r, 204)
        self.assertEqual(r.content, b"")
        self.assertEqual([a["id"] for a in self.addresses(p)], [a1["id"]])
        self.assertProblem(self.call("DELETE", ADDRESSES + "/" + a2["id"], auth=p), 404)
        self.assertProblem(self.call("DELETE", ADDRESSES + "/nope-" + uuid.uuid4().hex, auth=p),
                           404)

    def test_another_users_address_is_404(self):
        a_user, b_user = self.customer(), self.customer()
        a_addr = self.add(a_user)
        self.add(b_user, city="Paris", country="FR")
        self.assertProblem(self.call("DELETE", ADDRESSES + "/" + a_addr["id"], auth=b_user), 404)
        self.assertNotIn(a_addr["id"], [a["id"] for a in self.addresses(b_user)])
        self.assertEqual([a["id"] for a in self.addresses(a_user)], [a_addr["id"]],
                         "B's attempt removed A's address")

    def test_anonymous_is_401(self):
        self.assertUnauthorized(self.call("GET", ADDRESSES))
        self.assertUnauthorized(self.call("POST", ADDRESSES, address()))
        self.assertUnauthorized(self.call("DELETE", ADDRESSES + "/whatever"))


class TestAdminUsers(IdentityCase):
    def all_users(self, auth, limit=100):
        items, cursor = [], None
        for _ in range(200):
            params = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            r = self.call("GET", ADMIN_USERS, auth=auth, params=params)
            self.assertStatus(r, 200)
            self.assertNoSecrets(r)
            page = r.json()
            self.assertIsInstance(page.get("items"), list, page)
            self.assertIn("next_cursor", page, page)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        self.fail("admin user pagination does not terminate")

    def test_admin_lists_users_without_secrets(self):
        made = [self.register() for _ in range(3)]
        admin = self.cluster.admin_headers()
        for limit in (1, 2, 100):
            with self.subTest(limit=limit):
                items = self.all_users(admin, limit)
                ids = [u["id"] for u in items]
                self.assertEqual(len(ids), len(set(ids)), "a user listed twice")
                by_id = {u["id"]: u for u in items}
                for p in made:
                    self.assertIn(p.id, by_id)
                    u = by_id[p.id]
                    self.assertEqual(u["email"].lower(), p.email.lower())
                    self.assertEqual(u["role"], "customer")
                admins = [u for u in items if u["email"].lower() ==
                          self.cluster.admin_email.lower()]
                self.assertEqual(len(admins), 1, "the bootstrap admin exactly once")
                self.assertEqual(admins[0]["role"], "admin")
                self.assertEqual(find_secret_keys(items), [])

    def test_customer_403_anonymous_401(self):
        p = self.customer()
        self.assertProblem(self.call("GET", ADMIN_USERS, auth=p), 403)
        self.assertUnauthorized(self.call("GET", ADMIN_USERS))


class TestJwks(IdentityCase):
    def test_jwks_shape_and_rfc7638_kids(self):
        r = self.get("/.well-known/jwks.json")
        self.assertStatus(r, 200)
        self.assertIn("json", r.headers.get("Content-Type", ""))
        keys = r.json().get("keys")
        self.assertIsInstance(keys, list, r.text[:300])
        self.assertTrue(keys)
        for k in keys:
            with self.subTest(kid=k.get("kid")):
                self.assertEqual(k.get("kty"), "RSA", k)
                self.assertEqual(k.get("use"), "sig", k)
                self.assertEqual(k.get("alg"), "RS256", k)
                for m in ("kid", "n", "e"):
                    self.assertIsInstance(k.get(m), str, k)
                for private in ("d", "p", "q", "dp", "dq", "qi", "oth", "k"):
                    self.assertNotIn(private, k, "the JWKS leaks private member %r" % private)
                self.assertNotRegex(k["n"] + k["e"], r"[=+/]", "not base64url without padding")
                self.assertEqual(k["kid"], thumbprint(k), "kid is not the RFC 7638 thumbprint")
                pub = jwt.algorithms.RSAAlgorithm.from_jwk(k)
                self.assertGreaterEqual(pub.key_size, 2048)
        self.assertEqual(len({k["kid"] for k in keys}), len(keys))

    def test_private_key_file_is_0600(self):
        self.get("/.well-known/jwks.json")
        files = private_key_files(self.cluster.data_dir)
        self.assertTrue(files, "no RSA private key file under %s" % self.cluster.data_dir)
        kids = set(jwks_by_kid(self.jwks()))
        for path, key in files:
            with self.subTest(path=path):
                mode = stat.S_IMODE(os.stat(path).st_mode)
                self.assertEqual(mode & 0o077, 0, "%s has mode %o" % (path, mode))
                self.assertEqual(mode, 0o600, "%s has mode %o" % (path, mode))
        self.assertTrue({thumbprint(public_jwk(k.public_key())) for _, k in files} & kids,
                        "none of the key files is a key of the JWKS")
        # Whatever else lives in the key directory (DESIGN: $MERCATO_DATA_DIR/keys/) is private.
        for root, _dirs, names in os.walk(os.path.join(self.cluster.data_dir, "keys")):
            for n in names:
                path = os.path.join(root, n)
                mode = stat.S_IMODE(os.stat(path).st_mode)
                self.assertEqual(mode & 0o077, 0, "%s has mode %o" % (path, mode))

    def test_python_jwt_verifies_and_refuses(self):
        p = self.customer()
        jwks = self.jwks()
        claims = verify_with_jwks(p.access_token, jwks)
        self.assertEqual(claims["sub"], p.id)
        # The independent check really checks: a one-character change in the payload fails.
        h, pl, s = p.access_token.split(".")
        forged = h + "." + b64u_json({**claims, "role": "admin"}) + "." + s
        with self.assertRaises(jwt.InvalidSignatureError):
            verify_with_jwks(forged, jwks)


class TestReadiness(unittest.TestCase):
    """Right after /readyz says 200 the JWKS is served and tokens can be checked."""

    def test_keys_are_published_when_ready(self):
        c = Cluster()
        c.wait_for_keys = False          # start_all() returns as soon as /readyz is 200
        with c:
            r = requests.get(c.base_url + "/.well-known/jwks.json", timeout=10)
            self.assertEqual(r.status_code, 200, "/readyz was 200 but GET /.well-known/jwks.json "
                                                 "is %d: %s" % (r.status_code, r.text[:300]))
            p = c.register_customer()
            r = requests.get(c.api + "/users/me", headers=p.headers(), timeout=10)
            self.assertEqual(r.status_code, 200, r.text[:300])


class TestKeyRotation(IdentityCase):
    """A cluster per test: they rotate keys and restart processes."""

    PER_TEST = True

    def rotate(self):
        r = self.call("POST", ROTATE, auth=self.cluster.admin_headers())
        self.assertStatus(r, 200)
        kid = r.json().get("kid")
        self.assertIsInstance(kid, str, r.text[:300])
        return kid

    def kid_of(self, token):
        return split_token(token)[0].get("kid")

    def jwks_with(self, *kids, timeout=3.0):
        """The JWKS once it lists every kid given (or the last one seen after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            jwks = self.jwks()
            if set(kids) <= set(jwks_by_kid(jwks)) or time.monotonic() > deadline:
                return jwks
            time.sleep(0.1)

    def test_new_key_is_published_before_it_signs(self):
        # Right after the rotation is acknowledged: the JWKS already lists the new key (any
        # verifier that fetches it can check the tokens now issued), and the edge accepts them.
        p = self.register()
        old_kid = self.kid_of(self.cluster.login(p.email, p.password)["access_token"])
        new_kid = self.rotate()
        self.assertNotEqual(new_kid, old_kid)
        kids = set(jwks_by_kid(self.jwks()))
        self.assertIn(new_kid, kids, "the rotation was acknowledged but the JWKS does not list "
                                     "the new key yet")
        self.assertIn(old_kid, kids)
        self.login(p)
        self.assertEqual(self.kid_of(p.access_token), new_kid)
        self.assertStatus(self.me(p), 200, "a token issued right after the rotation")

    def test_rotation_keeps_old_tokens_valid_and_persists(self):
        p = self.customer()
        old_token = p.access_token
        old_kid = self.kid_of(old_token)
        new_kid = self.rotate()
        self.assertNotEqual(new_kid, old_kid)
        # (How fast the JWKS shows the new key is test_new_key_is_published_before_it_signs.)
        jwks = self.jwks_with(old_kid, new_kid)
        kids = jwks_by_kid(jwks)
        self.assertIn(old_kid, kids, "the old public key left the JWKS while its tokens live")
        self.assertIn(new_kid, kids, "the new key is not in the JWKS 3 s after the rotation")
        self.assertEqual(new_kid, thumbprint(kids[new_kid]))
        # Old tokens still verify, at the edge and by python-jwt.
        self.assertStatus(self.me(old_token), 200, "token signed by the rotated-out key")
        verify_with_jwks(old_token, jwks)
        # New tokens are signed by the new key.
        self.login(p)
        self.assertEqual(self.kid_of(p.access_token), new_kid)
        verify_with_jwks(p.access_token, jwks)
        self.assertStatus(self.me(p), 200, "a new-key token once the JWKS lists the new key")
        # Refresh after rotation also issues new-key tokens.
        r = self.refresh_raw(p.refresh_token)
        self.assertStatus(r, 200)
        self.assertEqual(self.kid_of(r.json()["access_token"]), new_kid)
        # Every key file is private.
        for path, _ in private_key_files(self.cluster.data_dir):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

        # Restart everything but the broker: keys and users come back from MERCATO_DATA_DIR.
        newer = p.access_token
        self.restart_gracefully("node")
        self.restart_gracefully("edge")
        kids_after = jwks_by_kid(self.jwks())
        self.assertLessEqual({old_kid, new_kid}, set(kids_after))
        self.assertStatus(self.me(old_token), 200, "old-key token after a restart")
        self.assertStatus(self.me(newer), 200, "new-key token after a restart")
        self.login(p)
        self.assertEqual(self.kid_of(p.access_token), new_kid,
                         "a restart went back to signing with the old key")

    def test_rotate_is_admin_only(self):
        p = self.customer()
        before = set(jwks_by_kid(self.jwks()))
        self.assertUnauthorized(self.call("POST", ROTATE))
        self.assertProblem(self.call("POST", ROTATE, auth=p), 403)
        self.assertEqual(set(jwks_by_kid(self.jwks())), before, "a refused rotation rotated")


class TestRestart(IdentityCase):
    """Own cluster: users, sessions and keys survive restarts; the admin bootstrap is idempotent."""

    def test_state_survives_restart(self):
        p = self.customer()
        a = self.call("POST", ADDRESSES, address(), auth=p)
        self.assertStatus(a, 201)
        kid = split_token(p.access_token)[0]["kid"]
        self.restart_gracefully("node")
        self.restart_gracefully("edge")
        self.assertEqual(split_token(self.cluster.login(p.email, p.password)["access_token"])[0]
                         ["kid"], kid, "a restart generated a new key")
        self.assertStatus(self.me(p), 200, "access token from before the restart")
        self.assertStatus(self.refresh_raw(p.refresh_token), 200,
                          "refresh token from before the restart")
        r = self.call("GET", ADDRESSES, auth=p)
        self.assertStatus(r, 200)
        self.assertEqual([x["id"] for x in r.json()["items"]], [a.json()["id"]])
        self.assertProblem(self.call("POST", REGISTER, {"email": p.email.upper(),
                                                        "password": strong_password(),
                                                        "name": "x"}), 409, "duplicate_email")

    def test_admin_bootstrap_is_idempotent_and_never_overwrites(self):
        original = self.cluster.admin_password
        self.cluster.env["MERCATO_ADMIN_PASSWORD"] = "a-different-" + uuid.uuid4().hex
        try:
            self.restart_gracefully("node")
        finally:
            self.cluster.env["MERCATO_ADMIN_PASSWORD"] = original
        self.assertStatus(self.login_raw(self.cluster.admin_email, original), 200,
                          "a restart replaced the existing admin's password")
        admin = self.cluster.admin_headers()
        r = self.call("GET", ADMIN_USERS, auth=admin, params={"limit": 100})
        self.assertStatus(r, 200)
        admins = [u for u in r.json()["items"]
                  if u["email"].lower() == self.cluster.admin_email.lower()]
        self.assertEqual(len(admins), 1, "the admin was created twice")


if __name__ == "__main__":
    unittest.main()
