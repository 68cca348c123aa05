#!/usr/bin/env python3
"""Regenerates spec/vectors/tokens.json: `python3 spec/vectors/tokens.py > spec/vectors/tokens.json`.

An implementation of spec/tokens.md independent of the Rust code (standard
library only), so the vectors check the format rather than one implementation.
"""
import base64
import hashlib
import hmac
import json

KEYS = {"k1": bytes(range(32)), "k0": bytes.fromhex("a5" * 16)}
KEY = "38574c97ace8ccab61b23102d438ae3ab49da37d62e4c2221f7834cc34f2c343"
INPUT = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
NOW = 1800000000


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mac(kid, message):
    return b64(hmac.new(KEYS[kid], message.encode(), hashlib.sha256).digest())


def token(kid, payload_json):
    signed = "upc1.%s.%s" % (kid, b64(payload_json.encode()))
    return signed + "." + mac(kid, signed)


def presigned(kid, key, exp):
    sig = mac(kid, "GET\n/v1/ops/%s/result\n%d" % (key, exp))
    return "/v1/ops/%s/result?exp=%d&kid=%s&sig=%s" % (key, exp, kid, sig)


key_scope = '{"exp":2000000000,"scope":{"key":"%s"}}' % KEY
input_scope = (
    '{"exp":2000000000,"nbf":1700000000,"scope":{"input":"%s","max_size":1048576,'
    '"ops":["image.thumbnail"]},"allow":["upload","status","wait","result"]}' % INPUT
)
good = token("k1", key_scope)
kid, payload, sig = good.split(".")[1:]
tampered_payload = b64(key_scope.replace("2000000000", "2000000001").encode())

cases = [
    {"name": "key scope, default allow", "token": good, "valid": True,
     "claims": json.loads(key_scope)},
    {"name": "input scope, every field (the Rust encoder's member order)",
     "token": token("k1", input_scope), "valid": True, "claims": json.loads(input_scope)},
    {"name": "older key k0 still verifies", "token": token("k0", key_scope), "valid": True,
     "claims": json.loads(key_scope)},
    {"name": "payload changed, signature kept",
     "token": "upc1.k1.%s.%s" % (tampered_payload, sig), "valid": False, "error": "signature"},
    {"name": "signature of another key", "token": "upc1.k1.%s.%s" % (payload, token("k0", key_scope).split(".")[3]),
     "valid": False, "error": "signature"},
    {"name": "kid changed", "token": "upc1.k0.%s.%s" % (payload, sig), "valid": False,
     "error": "signature"},
    {"name": "unknown kid", "token": "upc1.k9.%s.%s" % (payload, sig), "valid": False,
     "error": "unknown-kid"},
    {"name": "expired", "token": token("k1", '{"exp":1800000000,"scope":{"key":"%s"}}' % KEY),
     "valid": False, "error": "expired"},
    {"name": "not yet valid",
     "token": token("k1", '{"exp":2000000000,"nbf":1800000001,"scope":{"key":"%s"}}' % KEY),
     "valid": False, "error": "expired"},
    {"name": "unknown claim", "token": token("k1", '{"exp":2000000000,"scope":{"key":"%s"},"admin":true}' % KEY),
     "valid": False, "error": "claims"},
    {"name": "no exp", "token": token("k1", '{"scope":{"key":"%s"}}' % KEY), "valid": False,
     "error": "claims"},
    {"name": "two scopes at once",
     "token": token("k1", '{"exp":2000000000,"scope":{"key":"%s","input":"%s"}}' % (KEY, INPUT)),
     "valid": False, "error": "claims"},
    {"name": "padded base64", "token": good + "=", "valid": False, "error": "signature"},
    {"name": "v2 prefix", "token": "upc2" + good[4:], "valid": False, "error": "malformed"},
    {"name": "three parts", "token": "upc1.k1.%s" % payload, "valid": False, "error": "malformed"},
]
urls = [
    {"name": "valid", "key": KEY, "url": presigned("k1", KEY, 2000000000), "valid": True},
    {"name": "older key", "key": KEY, "url": presigned("k0", KEY, 2000000000), "valid": True},
    {"name": "expired", "key": KEY, "url": presigned("k1", KEY, NOW), "valid": False, "error": "expired"},
    {"name": "exp changed", "key": KEY,
     "url": presigned("k1", KEY, 2000000000).replace("exp=2000000000", "exp=2000000001"),
     "valid": False, "error": "signature"},
    {"name": "other key's URL", "key": INPUT, "url": presigned("k1", KEY, 2000000000).replace(KEY, INPUT),
     "valid": False, "error": "signature"},
]
print(json.dumps({
    "description": "upc1 token and presigned result URL vectors (spec/tokens.md); "
                   "verify at unix time `now` with the signing keys in `keys` (kid: hex secret)",
    "now": NOW,
    "keys": {kid: secret.hex() for kid, secret in KEYS.items()},
    "tokens": cases,
    "presigned": urls,
}, indent=2))
