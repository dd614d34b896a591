"""GET /healthz: the store answers, so the service can decide (Kubernetes probes, load balancers)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from sidecast.ads.api import schemas as S
from sidecast.ads.api.deps import StoreDep, resource_router

router = resource_router()


@router.get("/healthz", response_model=S.Health, tags=["ops"], responses={503: {"model": S.Problem}})
async def healthz(store: StoreDep) -> Any:
    try:
        store.ping()
    except Exception as exc:
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)
    return {"status": "ok", "store": store.name}
