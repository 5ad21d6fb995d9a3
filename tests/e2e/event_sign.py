"""The relay's record signature (common/mc_event_sign.h, schemas/events/README.md), written
again from its description with python3-cryptography: the tests sign records as the relay does,
with the cluster's key or another one, and check the relay's signatures independently.
"""

import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONTEXT = b"mercato-event-v1"
SIGNED_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type",
                  "ce_correlationid", "ce_causationid", "traceparent")
SIG_HEADER = "mercato_sig"
KID_HEADER = "mercato_kid"


def _b(v):
    if v is None:
        return b""
    return v.encode() if isinstance(v, str) else bytes(v)


def kid_of(public_key):
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_input(kid, topic, key, value, headers):
    """headers: a dict of header name -> str/bytes (absent ones left out)."""
    out = [CONTEXT]
    for f in [kid, topic, key, value] + [headers.get(h) for h in SIGNED_HEADERS]:
        b = _b(f)
        out.append(struct.pack(">I", len(b)) + b)
    return b"".join(out)


class Signer:
    def __init__(self, private_key):
        self.key = private_key
        self.kid = kid_of(private_key.public_key())

    @classmethod
    def load(cls, keys_dir):
        with open(os.path.join(keys_dir, "events.key"), "rb") as f:
            return cls(serialization.load_pem_private_key(f.read(), password=None))

    @classmethod
    def generate(cls):
        return cls(Ed25519PrivateKey.generate())

    def headers(self, topic, key, value, headers, kid=None):
        """The record's headers (a list of (name, bytes)) with the signature added; kid
        overrides the key id written (and signed), to play a forger's guess."""
        kid = kid or self.kid
        sig = self.key.sign(signing_input(kid, topic, key, value, headers))
        out = [(k, _b(v)) for k, v in headers.items()]
        out.append((SIG_HEADER, base64.urlsafe_b64encode(sig).rstrip(b"=")))
        out.append((KID_HEADER, kid.encode()))
        return out


def verify(public_key, topic, key, value, headers):
    """True when the record (headers a dict name -> bytes) carries a valid signature by key."""
    sig = headers.get(SIG_HEADER)
    kid = headers.get(KID_HEADER)
    if not sig or not kid or _b(kid).decode() != kid_of(public_key):
        return False
    raw = base64.urlsafe_b64decode(_b(sig) + b"=" * (-len(sig) % 4))
    try:
        public_key.verify(raw, signing_input(kid, topic, key, value, headers))
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
        return False
    return True
