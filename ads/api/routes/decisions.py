"""Decisions: POST /v1/decisions chooses the ads that fill one break for one session (players with a
token, or servers with a key); GET /v1/decisions/{id} shows a recorded decision and its beacons.

POST /v1/decisions is the hot route, so it has a route class of its own (`DecisionRoute`): a plain request
(a JSON body that validates, no query parameter but one `token`) calls the endpoint directly with the
values FastAPI's dependency solving would have given it; anything else goes through FastAPI as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from sidecast.ads.api import schemas as S
from sidecast.ads.api import tokens
from sidecast.ads.api.decide import DecisionRequest
from sidecast.ads.api.deps import (
    API_KEY,
    BaseUrl,
    Service,
    StoreDep,
    base_url,
    claims,
    has_key,
    management,
    resource_router,
)
from sidecast.ads.api.errors import responses
from sidecast.ads.api.service import BEACON_EVENTS, Settings

router = resource_router()


def decision_out(d: dict[str, Any], base: str, settings: Settings) -> dict[str, Any]:
    """A stored decision as the API shows it: with a player token in its beacon and asset-list URLs."""
    tok = tokens.sign({"d": d["decision_id"]}, settings.token_key, settings.token_ttl)
    did = d["decision_id"]
    return {
        "decision_id": did, "session_id": d["session_id"], "break_id": d["break_id"], "duration": d["duration"],
        "ads": [{"creative_id": a["creative_id"], "advertiser": a["advertiser"], "uri": a["uri"],
                 "duration": a["duration"], "click_through": a["click_through"],
                 "rendition_uris": a["rendition_uris"],
                 "beacons": {ev: f"{base}/v1/beacons/{did}/{i}/{ev}?token={tok}" for ev in BEACON_EVENTS},
                 "companions": a.get("companions", []), "nonlinears": a.get("nonlinears", [])}
                for i, a in enumerate(d["ads"])],
        "asset_list_url": f"{base}/v1/asset-list?" + urlencode({"decision": did, "token": tok}),
    }


def kv_map(kv: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in kv.items()}


_TOKEN_MAX = 2048  # the token query parameter's max_length


class DecisionRoute(APIRoute):
    """The route of POST /v1/decisions, with a direct call for plain requests.

    FastAPI solves a route's dependencies anew on every request (four here, each a nested solve with its
    own parameter parsing): measured, about a third of a decision's CPU. A plain request (a body that is
    ``application/json`` and validates as DecisionIn, no query parameter but at most one ``token`` within
    its length limit, no dependency overrides) needs none of that: its values are the request's own, and
    none of those dependencies can refuse it. So the handler builds them itself and calls the endpoint.
    Every other request (a malformed body, an unknown parameter, a second token...) goes through FastAPI's
    own handler, which reads the same cached body and answers exactly as before; only what cannot be
    retried, a failed read of the body, is answered here, the way FastAPI answers it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        overrides = self.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            scope = request.scope
            if (MAX_BODY_SIZE_SCOPE_KEY in scope or (overrides is not None and overrides.dependency_overrides)
                    or (request.headers.get("content-type") or "").lower() != "application/json"):
                return await full(request)
            token: str | None = None
            if scope["query_string"]:
                params = request.query_params
                if params.keys() != {"token"} or len(values := params.getlist("token")) != 1 \
                        or len(values[0]) > _TOKEN_MAX:
                    return await full(request)
                token = values[0]
            try:
                raw = await request.body()
            except HTTPException:
                raise
            except Exception as exc:  # what FastAPI's handler does when reading the body fails
                raise HTTPException(400, "There was an error parsing the body") from exc
            try:
                body = S.DecisionIn.model_validate(json.loads(raw))
            except Exception:  # not JSON (or too deep), or not a valid DecisionIn: FastAPI says why
                return await full(request)
            return await decisions(body, request.app.state.service, await base_url(request),  # type: ignore[no-any-return]
                                   request.headers.get("x-api-key") or None, token)

        return handler


async def decisions(body: S.DecisionIn, svc: Service, base: BaseUrl,
                    key: Annotated[str | None, Depends(API_KEY)] = None,
                    token: Annotated[str | None, Query(max_length=_TOKEN_MAX)] = None) -> Any:
    settings = svc.settings
    # a token, when given, must be valid even for key holders: a bad token is never silently ignored
    if token is not None or not (has_key(settings, key) or not settings.require_player_tokens):
        c = claims(settings, token)
        if c.get("sid") != body.session_id and c.get("scope") != "player":
            raise HTTPException(403, "token is not valid for this session")
    req = DecisionRequest(session_id=body.session_id, duration=body.duration, position=body.position,
                          key_values=kv_map(body.key_values), break_id=body.break_id or "",
                          max_ads=body.max_ads)
    d = await svc.decide(req)
    return JSONResponse(decision_out(d, base, settings))


router.add_api_route("/v1/decisions", decisions, methods=["POST"], response_model=S.Decision, tags=["decisions"],
                     summary="Choose the ads that fill one break for one session",
                     responses=responses(401, 403, 413, 422), route_class_override=DecisionRoute)


@router.get("/v1/decisions/{decision_id}", response_model=S.DecisionRecord, tags=["decisions"],
            summary="A recorded decision and the beacons received for it", dependencies=[Depends(management)],
            responses=responses(401, 404, 422))
async def get_decision(decision_id: Annotated[str, PathParam(max_length=64)], store: StoreDep) -> Any:
    d = store.get_decision(decision_id)
    if d is None:
        raise HTTPException(404, f"no decision {decision_id!r}")
    return {"decision": d, "beacons": store.beacons(decision_id)}

