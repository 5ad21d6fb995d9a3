"""Hostile access tokens (issue 3): every one is refused with 401 and WWW-Authenticate: Bearer.

Tokens are built with python3-jwt / python3-cryptography and by hand. Tokens that must differ
from a genuine one in exactly one respect (expired by 61 s, nbf in the future, exp as a string,
missing exp, wrong iss, kid elsewhere, oversized) are signed with the server's own private key,
read from MERCATO_DATA_DIR, so the only reason to refuse them is that one respect; the control
tests prove such a self-signed token is otherwise accepted.
"""

import hashlib
import json
import os
import sys
import time
import unittest
import uuid

import jwt
from cryptography.hazmat.primitives import hashes, serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from identity_support import (API, DROP, IdentityCase, b64u, b64u_json,  # noqa: E402
                              claims_for, fetch_jwks, jwks_by_kid, make_hmac, make_pss, make_rs256,
                              make_unsigned, new_rsa_key, public_jwk, server_signing_key,
                              split_token)

ME = API + "/users/me"
ADMIN_USERS = API + "/admin/users"
PRODUCTS = API + "/products"


class TokenCase(IdentityCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.cluster
        cls.user = c.register_customer()
        cls.good = cls.user.access_token
        cls.kid = split_token(cls.good)[0]["kid"]
        cls.foreign = new_rsa_key()
        try:
            cls.key_path, cls.key = server_signing_key(c.data_dir, cls.kid)
            cls.key_error = None
        except AssertionError as e:
            cls.key_path, cls.key, cls.key_error = None, None, str(e)
        cls.jwk = jwks_by_kid(fetch_jwks(c.base_url))[cls.kid]

    def server_key(self):
        if self.key is None:
            self.fail("cannot sign with the server's key: %s" % self.key_error)
        return self.key

    def header(self, **over):
        h = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        for k, v in over.items():
            if v is DROP:
                h.pop(k, None)
            else:
                h[k] = v
        return h

    def claims(self, **over):
        return claims_for(self.user.id, **over)

    def server_signed(self, header=None, **claims):
        return make_rs256(self.server_key(), header or self.header(), self.claims(**claims))

    def assertRefused(self, token, path=ME, method="GET", scheme="Bearer ", what=""):
        if isinstance(token, bytes):
            auth = scheme.encode() + token
        else:
            auth = scheme + token
        r = self.call(method, path, auth={"Authorization": auth})
        self.assertUnauthorized(r, what or (token[:80] if isinstance(token, str) else ""))
        return r

    def assertAccepted(self, token, what=""):
        r = self.call("GET", ME, auth=token)
        self.assertStatus(r, 200, what)
        self.assertEqual(r.json()["id"], self.user.id)


class TestControls(TokenCase):
    """The baseline the hostile tests depend on."""

    def test_genuine_token_is_accepted(self):
        self.assertAccepted(self.good)

    def test_token_signed_with_the_server_key_is_accepted(self):
        self.assertAccepted(self.server_signed(), "a well-formed token signed with the server "
                                                  "key must pass; otherwise the hostile tests "
                                                  "below prove nothing")

    def test_60s_leeway(self):
        now = int(time.time())
        self.assertAccepted(self.server_signed(iat=now - 930, exp=now - 30), "expired 30 s ago")
        self.assertAccepted(self.server_signed(iat=now + 30, exp=now + 930), "iat 30 s ahead")
        self.assertAccepted(self.server_signed(nbf=now + 30), "nbf 30 s ahead")

    def test_scheme_is_case_insensitive(self):
        # RFC 9110 11.1: auth-scheme is case-insensitive.
        r = self.call("GET", ME, auth={"Authorization": "bearer " + self.good})
        self.assertStatus(r, 200)


class TestAlgorithmConfusion(TokenCase):
    def test_alg_none(self):
        for alg in ("none", "NONE", "None", "nOnE"):
            for sig in ("", self.good.split(".")[2]):
                with self.subTest(alg=alg, signature=bool(sig)):
                    self.assertRefused(make_unsigned(self.header(alg=alg), self.claims(), sig))
        with self.subTest(alg="none", kid="absent"):
            self.assertRefused(make_unsigned({"alg": "none", "typ": "JWT"}, self.claims()))

    def hmac_secrets(self):
        pub = self.server_key().public_key() if self.key else \
            jwt.algorithms.RSAAlgorithm.from_jwk(self.jwk)
        spki_pem = pub.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        pkcs1_pem = pub.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.PKCS1)
        spki_der = pub.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"spki_pem": spki_pem, "spki_pem_stripped": spki_pem.strip(),
                "pkcs1_pem": pkcs1_pem, "spki_der": spki_der,
                "jwk_json": json.dumps(self.jwk).encode(),
                "jwk_json_compact": json.dumps(self.jwk, separators=(",", ":")).encode(),
                "n": self.jwk["n"].encode(), "empty": b""}

    def test_hs256_signed_with_the_rsa_public_key(self):
        for name, secret in self.hmac_secrets().items():
            with self.subTest(secret=name):
                self.assertRefused(make_hmac(secret, self.header(alg="HS256"), self.claims()))

    def test_hs384_and_hs512(self):
        for alg, digest in (("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
            for name, secret in self.hmac_secrets().items():
                with self.subTest(alg=alg, secret=name):
                    self.assertRefused(make_hmac(secret, self.header(alg=alg), self.claims(),
                                                 digest))

    def test_other_algorithms_with_the_server_key(self):
        # RS256 only: the right key under another algorithm is still refused.
        key = self.server_key()
        cases = {"RS512": make_rs256(key, self.header(alg="RS512"), self.claims(),
                                     hashes.SHA512()),
                 "RS384": make_rs256(key, self.header(alg="RS384"), self.claims(),
                                     hashes.SHA384()),
                 "PS256": make_pss(key, self.header(alg="PS256"), self.claims()),
                 "rs256": make_rs256(key, self.header(alg="rs256"), self.claims()),
                 "missing alg": make_rs256(key, self.header(alg=DROP), self.claims()),
                 "alg list": make_rs256(key, self.header(alg=["RS256"]), self.claims())}
        for name, token in cases.items():
            with self.subTest(alg=name):
                self.assertRefused(token)


class TestForeignKeys(TokenCase):
    def test_foreign_rsa_key(self):
        fj = public_jwk(self.foreign.public_key())
        for name, header in (("real kid", self.header()),
                             ("foreign kid", self.header(kid=fj["kid"])),
                             ("no kid", self.header(kid=DROP)),
                             ("embedded jwk", self.header(jwk=fj)),
                             ("embedded jwk, its kid", self.header(kid=fj["kid"], jwk=fj)),
                             ("jku", self.header(jku="http://127.0.0.1:9/jwks.json")),
                             ("x5u", self.header(x5u="http://127.0.0.1:9/cert.pem"))):
            with self.subTest(header=name):
                self.assertRefused(make_rs256(self.foreign, header, self.claims()))

    def test_foreign_key_made_with_python_jwt(self):
        pem = self.foreign.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        token = jwt.encode(self.claims(), pem, algorithm="RS256", headers={"kid": self.kid})
        self.assertRefused(token)


class TestTampering(TokenCase):
    def tamper(self, token, **changes):
        h, p, s = token.split(".")
        claims = split_token(token)[1]
        claims.update(changes)
        return h + "." + b64u_json(claims) + "." + s

    def test_tampered_payload(self):
        other = self.cluster.register_customer()
        for name, changes in (("role admin", {"role": "admin"}),
                              ("another sub", {"sub": other.id}),
                              ("longer exp", {"exp": int(time.time()) + 86400})):
            with self.subTest(change=name):
                self.assertRefused(self.tamper(self.good, **changes))

    def test_tampered_signature_and_header(self):
        h, p, s = self.good.split(".")
        sig = bytearray(split_token(self.good)[2])
        sig[-1] ^= 1
        other = self.cluster.register_customer().access_token
        cases = {"flipped bit": h + "." + p + "." + b64u(bytes(sig)),
                 "no signature": h + "." + p + ".",
                 "truncated signature": h + "." + p + "." + s[:-4],
                 "another token's signature": h + "." + p + "." + other.split(".")[2],
                 "header re-encoded": b64u_json(split_token(self.good)[0]) + "x." + p + "." + s,
                 "typ changed": b64u_json({**split_token(self.good)[0], "typ": "at+jwt!"}) +
                                "." + p + "." + s}
        for name, token in cases.items():
            with self.subTest(case=name):
                self.assertRefused(token)

    def test_forged_admin_tokens_do_not_reach_admin_routes(self):
        forged = {"tampered": self.tamper(self.good, role="admin"),
                  "alg none": make_unsigned(self.header(alg="none"), self.claims(role="admin")),
                  "foreign key": make_rs256(self.foreign, self.header(), self.claims(role="admin"))}
        for name, token in forged.items():
            with self.subTest(token=name, route="GET admin/users"):
                self.assertRefused(token, ADMIN_USERS)
            with self.subTest(token=name, route="POST products"):
                r = self.call("POST", PRODUCTS, {"sku": "FORGED-" + uuid.uuid4().hex[:8],
                                                 "name": "x", "description": "x",
                                                 "category": "forged", "price_cents": 1},
                              auth=token)
                self.assertUnauthorized(r)


class TestClaims(TokenCase):
    def test_expired_by_61s(self):
        now = int(time.time())
        self.assertRefused(self.server_signed(iat=now - 961, exp=now - 61), what="exp now-61")
        self.assertRefused(self.server_signed(iat=now - 7200, exp=now - 3600), what="exp now-1h")

    def test_nbf_in_the_future(self):
        now = int(time.time())
        self.assertRefused(self.server_signed(nbf=now + 120), what="nbf now+120")
        self.assertRefused(self.server_signed(nbf=now + 3600, exp=now + 4500),
                           what="nbf now+1h")

    def test_iat_in_the_future(self):
        now = int(time.time())
        self.assertRefused(self.server_signed(iat=now + 120, exp=now + 1020), what="iat now+120")

    def test_exp_as_string(self):
        now = int(time.time())
        self.assertRefused(self.server_signed(exp=str(now + 900)))

    def test_exp_of_other_wrong_types(self):
        now = int(time.time())
        for v in (None, True, [now + 900], {"t": now + 900}, "soon"):
            with self.subTest(exp=v):
                self.assertRefused(self.server_signed(exp=v))

    def test_missing_exp(self):
        self.assertRefused(self.server_signed(exp=DROP))

    def test_wrong_iss(self):
        for iss in ("evil", "Mercato", "mercato ", "", ["mercato"], None, DROP):
            with self.subTest(iss=iss if iss is not DROP else "<missing>"):
                self.assertRefused(self.server_signed(iss=iss))


class TestKid(TokenCase):
    def test_kid_pointing_nowhere(self):
        for kid in ("nope", self.kid + "x", self.kid[:-1], "", "0", None, 42, ["" + self.kid]):
            with self.subTest(kid=kid):
                self.assertRefused(self.server_signed(header=self.header(kid=kid)))

    def test_missing_kid(self):
        # "pick the key by kid from the in-memory key table only": no kid, no key.
        self.assertRefused(self.server_signed(header=self.header(kid=DROP)))

    def test_kid_pointing_at_a_path(self):
        key_dir = os.path.dirname(self.key_path) if self.key_path else ""
        base = os.path.basename(self.key_path) if self.key_path else "key.pem"
        kids = ["/dev/null", "../../../../../../../../dev/null", "file:///dev/null",
                "/etc/passwd", self.key_path or "/nonexistent", "../" + base,
                "./" + base, base, os.path.join("..", os.path.basename(key_dir), base),
                "keys/" + base, self.kid + ".pem", "../keys/" + self.kid,
                "x' OR '1'='1", self.kid + "/../" + self.kid, self.kid + "\x00"]
        for kid in kids:
            with self.subTest(kid=kid, alg="RS256 server key"):
                self.assertRefused(self.server_signed(header=self.header(kid=kid)))
            with self.subTest(kid=kid, alg="HS256 empty secret"):
                self.assertRefused(make_hmac(b"", self.header(alg="HS256", kid=kid),
                                             self.claims()))


class TestMalformed(TokenCase):
    def test_oversized_tokens(self):
        # About 7.5 KB on the wire: far beyond any token the server issues, yet inside the edge's
        # 8 KiB limit on one header (CONTRACT 9), so the refusal must come from the token check.
        pad = "A" * 5200
        tokens = {
            "validly signed by the server": self.server_signed(pad=pad),
            "foreign key": make_rs256(self.foreign, self.header(), self.claims(pad=pad)),
            "7.5 KB of base64url": "eyJ" + "A" * 2500 + "." + "B" * 2500 + "." + "C" * 2500,
            "huge kid": self.server_signed(header=self.header(kid="k" * 5200)),
        }
        for kind, token in tokens.items():
            with self.subTest(kind=kind):
                self.assertGreater(len(token), 7000)
                self.assertLess(len("Authorization: Bearer " + token), 8192)
                self.assertRefused(token)
        # past 8 KiB the header itself is refused, before any token check
        with self.subTest(kind="12 KB of base64url"):
            r = self.call("GET", ME, auth={"Authorization": "Bearer eyJ" + "A" * 4000 + "." + "B" * 4000
                                           + "." + "C" * 4000})
            self.assertProblem(r, 431)

    def test_malformed_tokens(self):
        h, p, s = self.good.split(".")
        cases = {
            "empty": "", "one part": "abc", "two parts": h + "." + p, "four parts":
            self.good + ".AAAA", "dots only": "..", "three dots": "...",
            "bad base64 header": "!!!." + p + "." + s, "bad base64 payload": h + ".%%%." + s,
            "header not json": b64u("not json") + "." + p + "." + s,
            "header json array": b64u("[1,2]") + "." + p + "." + s,
            "header json string": b64u('"RS256"') + "." + p + "." + s,
            "payload not json": make_rs256(self.server_key(), self.header(), b64u("nope")),
            "payload json array": make_rs256(self.server_key(), self.header(), b64u("[]")),
            "payload truncated json": make_rs256(self.server_key(), self.header(),
                                                 b64u('{"iss":"mercato"')),
            "padded base64": h + "==." + p + "." + s,
            "standard base64 alphabet": h.replace("-", "+").replace("_", "/") + "." + p + "." +
                                        s.replace("-", "+").replace("_", "/") + "+/",
            "space inside": h + ". " + p + "." + s, "trailing dot": self.good + ".",
            "trailing garbage": self.good + " x", "leading dot": "." + self.good,
            "crit header": make_rs256(self.server_key(), self.header(crit=["x-unknown"],
                                                                     **{"x-unknown": 1}),
                                      self.claims()),
        }
        for name, token in cases.items():
            with self.subTest(case=name):
                self.assertRefused(token)
        with self.subTest(case="non-ASCII bytes"):
            self.assertRefused(h.encode() + b"\xc3\xa9." + p.encode() + b"." + s.encode())

    def test_bad_authorization_headers(self):
        for name, value in (("scheme only", "Bearer"), ("empty token", "Bearer "),
                            ("basic", "Basic dXNlcjpwYXNzd29yZA=="),
                            ("other scheme", "Token " + self.good),
                            ("no scheme", self.good),
                            ("two tokens", "Bearer " + self.good + " " + self.good),
                            ("comma list", "Bearer " + self.good + ", Bearer x")):
            with self.subTest(case=name):
                r = self.call("GET", ME, auth={"Authorization": value})
                self.assertUnauthorized(r)

    def test_zz_edge_still_serves_after_all_that(self):
        for p in self.cluster.procs.values():
            self.assertTrue(p.alive(), p.name + " died")
        self.assertStatus(self.get("/healthz"), 200)
        self.assertAccepted(self.good)


if __name__ == "__main__":
    unittest.main()
