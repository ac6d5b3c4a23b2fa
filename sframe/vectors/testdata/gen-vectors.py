#!/usr/bin/env python3
"""Writes extra RFC 9605 SFrame test vectors (Appendix C format) with
counters a Sender never uses, computed by an implementation independent of
this module (Python's hashlib/hmac and pyca/cryptography's AES).

    python3 gen-vectors.py --check ../../testdata/test-vectors.json   # reproduce the RFC's sframe cases first
    python3 gen-vectors.py > ctr-edge.json
"""
import hashlib, hmac, json, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SUITES = {  # suite: (hash, Nk, Nka, Nt, gcm)
    1: (hashlib.sha256, 48, 16, 10, False),
    2: (hashlib.sha256, 48, 16, 8, False),
    3: (hashlib.sha256, 48, 16, 4, False),
    4: (hashlib.sha256, 16, 0, 16, True),
    5: (hashlib.sha512, 32, 0, 16, True),
}

def hkdf_extract(h, ikm):
    return hmac.new(b"\0" * h().digest_size, ikm, h).digest()

def hkdf_expand(h, prk, info, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), h).digest()
        out += t
        i += 1
    return out[:n]

def minimal(v):
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")

def header(kid, ctr):
    b, rest = 0, b""
    if kid < 8:
        b |= kid << 4
    else:
        k = minimal(kid); b |= 0x80 | (len(k) - 1) << 4; rest += k
    if ctr < 8:
        b |= ctr
    else:
        c = minimal(ctr); b |= 0x08 | (len(c) - 1); rest += c
    return bytes([b]) + rest

def aead_encrypt(suite, key, nonce, aad, pt):
    h, nk, nka, nt, gcm = SUITES[suite]
    if gcm:
        return AESGCM(key).encrypt(nonce, pt, aad)
    enc_key, auth_key = key[:nka], key[nka:]
    e = Cipher(algorithms.AES(enc_key), modes.CTR(nonce + b"\0\0\0\0")).encryptor()
    ct = e.update(pt) + e.finalize()
    auth = len(aad).to_bytes(8, "big") + len(ct).to_bytes(8, "big") + nt.to_bytes(8, "big") + nonce + aad + ct
    return ct + hmac.new(auth_key, auth, h).digest()[:nt]

def vector(suite, kid, ctr, base_key, metadata, pt):
    h, nk, nka, nt, gcm = SUITES[suite]
    key_label = b"SFrame 1.0 Secret key " + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")
    salt_label = b"SFrame 1.0 Secret salt " + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")
    secret = hkdf_extract(h, base_key)
    key = hkdf_expand(h, secret, key_label, nk)
    salt = hkdf_expand(h, secret, salt_label, 12)
    nonce = (int.from_bytes(salt, "big") ^ ctr).to_bytes(12, "big")
    hdr = header(kid, ctr)
    aad = hdr + metadata
    ct = hdr + aead_encrypt(suite, key, nonce, aad, pt)
    return {"cipher_suite": suite, "kid": kid, "ctr": ctr, "base_key": base_key.hex(),
            "sframe_key_label": key_label.hex(), "sframe_salt_label": salt_label.hex(),
            "sframe_secret": secret.hex(), "sframe_key": key.hex(), "sframe_salt": salt.hex(),
            "metadata": metadata.hex(), "nonce": nonce.hex(), "aad": aad.hex(), "pt": pt.hex(), "ct": ct.hex()}

if len(sys.argv) == 3 and sys.argv[1] == "--check":
    for c in json.load(open(sys.argv[2]))["sframe"]:
        got = vector(c["cipher_suite"], c["kid"], c["ctr"], bytes.fromhex(c["base_key"]),
                     bytes.fromhex(c["metadata"]), bytes.fromhex(c["pt"]))
        assert got == c, (got, c)
    print("reproduced every sframe case of", sys.argv[2])
    sys.exit(0)

base = bytes(range(48))
pt = b"draft-ietf-sframe-enc"
md = b"IETF SFrame WG"
cases = []
for suite in (1, 4, 5):
    nk = SUITES[suite][1]
    for kid, ctr in ((0x123, 0xFFFFFFFFFFFFFFFF), (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF00000000), (7, 0xFFFFFFFEFFFFFFFF)):
        cases.append(vector(suite, kid, ctr, base[:nk], md, pt))
json.dump({"sframe": cases}, sys.stdout, indent=2)
print()
