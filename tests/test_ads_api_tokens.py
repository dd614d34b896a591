"""Signed player tokens (ads/api/tokens.py): what the ads API hands out and what the core can check."""

from __future__ import annotations

import pytest

from sidecast.ads.api import tokens

KEY = "a-key-of-at-least-16-bytes"


def test_a_signed_token_verifies_to_its_claims_until_it_expires() -> None:
    t = tokens.sign({"sid": "viewer-1", "stream": "live"}, KEY, ttl=60, now=1000)
    assert tokens.verify(t, KEY, now=1059) == {"sid": "viewer-1", "stream": "live", "exp": 1060}
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(t, KEY, now=1061)


def test_forged_tampered_and_malformed_tokens_are_refused_with_a_reason() -> None:
    t = tokens.sign({"sid": "viewer-1"}, KEY, ttl=60)
    payload, sig = t.split(".")
    other = tokens.sign({"sid": "admin"}, KEY, ttl=60).split(".")[0]
    cases = [
        (tokens.sign({"sid": "viewer-1"}, "another-key-16-bytes!", ttl=60), "bad token signature"),
        (f"{other}.{sig}", "bad token signature"),
        ("no-dot-here", "malformed token"),
        ("a.b.c", "malformed token"),
        (f"{payload}.!!!", "bad token signature|malformed"),
        ("", "malformed token"),
    ]
    for token, needle in cases:
        with pytest.raises(tokens.TokenError, match=needle):
            tokens.verify(token, KEY)


def test_short_keys_and_non_positive_ttls_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        tokens.sign({}, "short", ttl=10)
    with pytest.raises(ValueError, match="ttl must be positive"):
        tokens.sign({}, KEY, ttl=0)
