"""Shared helpers for the identity tests (CONTRACT 3): JWKS, RFC 7638 thumbprints, JWT building
and independent verification with Debian's python3-jwt / python3-cryptography.

Not a test module (no test_ prefix): test_identity.py, test_tokens.py and test_authz.py import it.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ClusterTestCase, Principal, strong_password, unique_email  # noqa: E402

API = "/api/v1"
JWKS_PATH = "/.well-known/jwks.json"
ISSUER = "mercato"
ACCESS_TTL = 900
SECRET_WORDS = ("password", "hash")


# --- encoding --------------------------------------------------------------------------------
def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    s = s.encode() if isinstance(s, str) else s
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def b64u_json(obj):
    return b64u(json.dumps(obj, separators=(",", ":")))


def int_b64u(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def split_token(token):
    """(header dict, payload dict, signature bytes) without any verification."""
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), b64u_decode(s)


def thumbprint(jwk):
    """RFC 7638 JWK thumbprint of an RSA key: SHA-256 over the required members, lexicographic
    order, no whitespace, base64url without padding."""
    canon = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"),
                       sort_keys=True)
    return b64u(hashlib.sha256(canon.encode()).digest())


def public_jwk(pub, kid=None):
    nums = pub.public_numbers()
    jwk = {"kty": "RSA", "n": int_b64u(nums.n), "e": int_b64u(nums.e)}
    jwk["kid"] = kid or thumbprint(jwk)
    return jwk


# --- building tokens (anything goes: these are for hostile tests) ----------------------------
def signing_input(header, payload):
    hp = header if isinstance(header, str) else b64u_json(header)
    pp = payload if isinstance(payload, str) else b64u_json(payload)
    return hp + "." + pp


def rs_sign(private_key, data, hash_alg=None):
    return private_key.sign(data.encode(), padding.PKCS1v15(), hash_alg or hashes.SHA256())


def make_rs256(private_key, header, payload, hash_alg=None):
    si = signing_input(header, payload)
    return si + "." + b64u(rs_sign(private_key, si, hash_alg))


def make_pss(private_key, header, payload):
    si = signing_input(header, payload)
    sig = private_key.sign(si.encode(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                    salt_length=32), hashes.SHA256())
    return si + "." + b64u(sig)


def make_hmac(secret, header, payload, digest=hashlib.sha256):
    si = signing_input(header, payload)
    return si + "." + b64u(hmac.new(secret, si.encode(), digest).digest())


def make_unsigned(header, payload, signature=""):
    return signing_input(header, payload) + "." + signature


def new_rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def claims_for(user_id, role="customer", now=None, **over):
    now = int(time.time()) if now is None else now
    c = {"iss": ISSUER, "sub": user_id, "role": role, "iat": now, "exp": now + ACCESS_TTL,
         "jti": uuid.uuid4().hex}
    for k, v in over.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


DROP = object()


# --- the server's keys -------------------------------------------------------------------------
def fetch_jwks(base_url):
    r = requests.get(base_url + JWKS_PATH, timeout=10)
    r.raise_for_status()
    return r.json()


def jwks_by_kid(jwks):
    return {k.get("kid"): k for k in jwks.get("keys", [])}


def verify_with_jwks(token, jwks, **kw):
    """Independent verification: python3-jwt, key chosen by kid from the served JWKS."""
    kid = jwt.get_unverified_header(token).get("kid")
    jwk = jwks_by_kid(jwks).get(kid)
    if jwk is None:
        raise AssertionError("token kid %r not in the JWKS (kids: %s)" % (
            kid, sorted(jwks_by_kid(jwks))))
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    return jwt.decode(token, key, algorithms=["RS256"], issuer=ISSUER,
                      options={"require": ["exp", "iat", "iss", "sub"]}, **kw)


def private_key_files(data_dir):
    """Every file under data_dir that holds an RSA private key: [(path, key)]."""
    found = []
    for root, _dirs, files in os.walk(data_dir):
        for f in files:
            path = os.path.join(root, f)
            try:
                if os.path.getsize(path) > 64 * 1024:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            key = None
            for loader in (serialization.load_pem_private_key,
                           serialization.load_der_private_key):
                try:
                    key = loader(data, password=None)
                    break
                except Exception:  # noqa: BLE001 - not a key in this encoding
                    continue
            if key is None and data.lstrip().startswith(b"{"):
                try:
                    j = json.loads(data)
                    if isinstance(j, dict) and j.get("kty") == "RSA" and "d" in j:
                        key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(j))
                except Exception:  # noqa: BLE001
                    key = None
            if isinstance(key, rsa.RSAPrivateKey):
                found.append((path, key))
    return found


def server_signing_key(data_dir, kid):
    """The server's private key whose thumbprint is kid, read from MERCATO_DATA_DIR: lets the
    tests sign tokens that differ from a real one in exactly one claim."""
    files = private_key_files(data_dir)
    for path, key in files:
        if thumbprint(public_jwk(key.public_key())) == kid:
            return path, key
    raise AssertionError("no RSA private key with kid %s under %s (found: %s)" % (
        kid, data_dir, [(p, thumbprint(public_jwk(k.public_key()))) for p, k in files]))


def find_secret_keys(obj, path="$"):
    """Field names anywhere in obj that look like a password or a hash."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any(w in str(k).lower() for w in SECRET_WORDS):
                out.append("%s.%s" % (path, k))
            out.extend(find_secret_keys(v, "%s.%s" % (path, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(find_secret_keys(v, "%s[%d]" % (path, i)))
    return out


# --- base test case ------------------------------------------------------------------------------
class IdentityCase(ClusterTestCase):
    """Helpers for CONTRACT 3 through HTTP. All requests state their authorization explicitly."""

    def register(self, email=None, password=None, name=None, expect=201, **extra):
        body = {"email": email or unique_email(), "password": password or strong_password(),
                "name": name if name is not None else "Test User"}
        body.update(extra)
        r = self.call("POST", API + "/auth/register", body)
        self.assertStatus(r, expect)
        if expect == 201:
            self.assertNoSecrets(r)
            return Principal(body["email"], body["password"], body["name"], user=r.json())
        return r

    def login_raw(self, email, password):
        return self.call("POST", API + "/auth/login", {"email": email, "password": password})

    def login(self, principal):
        r = self.login_raw(principal.email, principal.password)
        self.assertStatus(r, 200)
        principal.tokens = self.assertTokenPair(r)
        return principal.tokens

    def customer(self, **kw):
        p = self.register(**kw)
        self.login(p)
        return p

    def refresh_raw(self, refresh_token):
        return self.call("POST", API + "/auth/refresh", {"refresh_token": refresh_token})

    def me(self, auth):
        return self.call("GET", API + "/users/me", auth=auth)

    def restart_gracefully(self, name):
        """SIGTERM (the node says goodbye to the broker), start again, wait for readiness."""
        p = self.cluster.procs[name]
        code = p.stop()
        self.assertEqual(code, 0, "%s exit code on SIGTERM\n%s" % (name, p.tails()))
        self.cluster.start(name)
        self.cluster.wait_ready()

    def jwks(self):
        r = self.get(JWKS_PATH)
        self.assertStatus(r, 200)
        return r.json()

    def assertTokenPair(self, r):
        t = r.json()
        self.assertNoSecrets(r)
        for k in ("access_token", "token_type", "expires_in", "refresh_token"):
            self.assertIn(k, t, t)
        self.assertEqual(t["token_type"], "Bearer", t)
        self.assertEqual(t["expires_in"], ACCESS_TTL, t)
        self.assertIsInstance(t["access_token"], str)
        self.assertIsInstance(t["refresh_token"], str)
        self.assertTrue(t["refresh_token"], t)
        self.assertEqual(t["access_token"].count("."), 2, "access token is not a JWS: %r" % t)
        return t

    def assertNoSecrets(self, r):
        """No field named like a password or a hash, and no argon2 string, anywhere."""
        try:
            body = r.json()
        except ValueError:
            body = None
        self.assertEqual(find_secret_keys(body), [], "secret-looking fields in %s %s: %s" % (
            r.request.method, r.request.url, r.text[:800]))
        self.assertNotIn("$argon2", r.text, "an argon2 hash leaked: %s" % r.text[:800])
