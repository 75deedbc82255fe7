"""tests/fixtures/request_signing_vectors.json and nkey_vectors.json, recomputed in Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unibus
from unibus.wire import canonical_request, crc16_xmodem, seed_nkey, sign_request, user_nkey

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
SIGNING = json.loads((FIXTURES / "request_signing_vectors.json").read_text())
NKEY = json.loads((FIXTURES / "nkey_vectors.json").read_text())


@pytest.mark.parametrize("v", SIGNING["vectors"], ids=lambda v: v["name"])
def test_signed_requests_reproduce_their_canonical_string_signature_and_headers(v: dict) -> None:
    ident = unibus.Identity(bytes.fromhex(v["seedHex"]), bytes(32))
    assert ident.sign_pub_hex == v["publicKeyHex"]
    body = (v.get("bodyUtf8") or "").encode()
    canonical = canonical_request(v["method"], v["pathAndQuery"], v["timestamp"], v["nonce"], body)
    assert canonical == v["canonical"]
    headers = sign_request(ident, v["method"], v["pathAndQuery"], body, v["timestamp"], v["nonce"])
    assert headers == v["headers"]
    assert len(headers["x-unibus-signature"]) == 86


def test_the_nkey_spelling_of_the_user_key_and_its_seed() -> None:
    u, s = NKEY["user"], NKEY["seed"]
    raw = bytes.fromhex(u["rawHex"])
    assert crc16_xmodem(raw) == u["crc16"]
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert user_nkey(bytes.fromhex(u["signPubHex"])) == u["nkey"]
    assert seed_nkey(bytes.fromhex(u["signSeedHex"])) == s["seed"]
    assert s["seed"].startswith("SU") and len(s["seed"]) == 58
