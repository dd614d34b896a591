"""The catalog's CRUD routes, built the same way for each kind of record (creatives, campaigns, sources,
breaks):
POST (201, 409 on a taken id), GET list, GET one, PUT (replace), DELETE (204). Management key required.
Each kind's module makes its router with `crud_router`, adding the checks only it needs."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response

from sidecast.ads.api import schemas as S
from sidecast.ads.api.deps import Service, StoreDep, management, resource_router
from sidecast.ads.api.errors import responses
from sidecast.ads.api.service import AdService
from sidecast.ads.store import Kind

Check = Callable[[dict[str, Any], AdService], Awaitable[None] | None]
"""Raises HTTPException (422, 409) when a record may not be stored as it is (may be a coroutine: URL
checks resolve host names)."""


async def _run(check: Check, doc: dict[str, Any], svc: AdService) -> None:
    result = check(doc, svc)
    if inspect.isawaitable(result):
        await result


def crud_router(kind: Kind, model_in: type[S._Strict], model_out: type[S._Strict], *,
                check: Check | None = None, before_delete: Check | None = None) -> APIRouter:
    """The five routes of one catalog kind under /v1/{kind}. `check` vets a record before it is stored;
    `before_delete` may refuse a deletion (409) while other records still use it."""
    path = f"/v1/{kind}"
    singular = kind[:-1]
    router = resource_router(tags=[kind], dependencies=[Depends(management)])

    async def create(body: Any, svc: Service) -> Any:
        store = svc.store
        doc = body.model_dump(mode="json")
        doc["id"] = doc.get("id") or f"{singular[:2]}-{secrets.token_hex(6)}"
        if check:
            await _run(check, doc, svc)
        if not store.put(kind, doc["id"], doc, create=True):
            raise HTTPException(409, f"{singular} {doc['id']!r} already exists; delete it first or use another id")
        return JSONResponse(doc, status_code=201)

    create.__annotations__["body"] = model_in
    router.post(path, status_code=201, response_model=model_out, summary=f"Register a {singular}",
                responses=responses(401, 409, 413, 422), operation_id=f"create_{singular}")(create)

    async def list_all(store: StoreDep) -> Any:
        return store.items(kind)

    router.get(path, response_model=list[model_out], summary=f"List {kind}",  # type: ignore[valid-type]
               responses=responses(401), operation_id=f"list_{kind}")(list_all)

    async def get_one(id: Annotated[str, PathParam(max_length=64)], store: StoreDep) -> Any:
        doc = store.get(kind, id)
        if doc is None:
            raise HTTPException(404, f"no {singular} with id {id!r}")
        return doc

    router.get(path + "/{id}", response_model=model_out, summary=f"Get a {singular}",
               responses=responses(401, 404, 422), operation_id=f"get_{singular}")(get_one)

    async def replace_one(id: Annotated[str, PathParam(max_length=64)], body: Any, svc: Service) -> Any:
        store = svc.store
        doc = body.model_dump(mode="json")
        if doc.get("id") not in (None, id):
            raise HTTPException(422, f"id in the body ({doc['id']!r}) differs from the URL's ({id!r})")
        doc["id"] = id
        if store.get(kind, id) is None:
            raise HTTPException(404, f"no {singular} with id {id!r} (create it with POST {path})")
        if check:
            await _run(check, doc, svc)
        store.put(kind, id, doc, create=False)
        return doc

    replace_one.__annotations__["body"] = model_in
    router.put(path + "/{id}", response_model=model_out, summary=f"Replace a {singular}",
               responses=responses(401, 404, 413, 422), operation_id=f"replace_{singular}")(replace_one)

    async def delete_one(id: Annotated[str, PathParam(max_length=64)], svc: Service) -> Response:
        store = svc.store
        if before_delete:
            await _run(before_delete, {"id": id}, svc)
        if not store.delete(kind, id):
            raise HTTPException(404, f"no {singular} with id {id!r}")
        return Response(status_code=204)

    router.delete(path + "/{id}", status_code=204, summary=f"Delete a {singular}",
                  responses=responses(401, 404, 409, 413, 422), operation_id=f"delete_{singular}")(delete_one)
    return router
