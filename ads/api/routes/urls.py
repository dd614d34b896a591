"""Registration-time URL checks: a URL the service will fetch later (a VAST or VMAP tag, a tracking pixel,
a creative's media) is refused with 422 now when it can never be fetched safely (not http(s),
credentials in it, an internal address written in any form, or a name that resolves to one), rather than
accepted (201) and silently dropped at every decision. The same rules as every fetch (ads/fetch.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fastapi import HTTPException

from sidecast.ads.api.service import AdService
from sidecast.ads.fetch import UnsafeURL, check_registration_url


async def refuse_unsafe(svc: AdService, named: Iterable[tuple[str, str]]) -> None:
    """422 naming the first field whose URL may not be fetched; `named` is (field, url) pairs."""
    pairs = [(f, u) for f, u in named if u]
    results = await asyncio.gather(*(check_registration_url(u, svc.policy) for _, u in pairs),
                                   return_exceptions=True)
    for (name, _), r in zip(pairs, results, strict=True):
        if isinstance(r, UnsafeURL):
            raise HTTPException(422, f"{name}: {r}")
        if isinstance(r, BaseException):
            raise r
