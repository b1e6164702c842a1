"""A small FastAPI API whose routes are protected by idp access tokens, verified locally with ``idp.verify``.

    GET  /public   anyone
    GET  /items    a token with scope items:read
    POST /items    a token with scope items:write

Configuration: ``API_ISSUER`` (default ``http://127.0.0.1:5000``, what ``make run`` serves) and ``API_AUDIENCE``
(default ``https://api.example``, this API's identifier, registered as the client's ``--audience``).
Run: ``uvicorn app:app --app-dir examples/fastapi_api --port 8001`` (see README.md beside this file).
"""

# No ``from __future__ import annotations``: FastAPI reads the ``Depends(...)`` in the route signatures at
# runtime, and those name local variables of ``create_app``.
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from idp.verify import TokenVerifier
from idp.verify_fastapi import RequireToken

ITEMS = [{"id": 1, "name": "first item"}]


class NewItem(BaseModel):
    name: str = "unnamed"


def create_app(verifier: TokenVerifier | None = None) -> FastAPI:
    verifier = verifier or TokenVerifier(
        os.environ.get("API_ISSUER", "http://127.0.0.1:5000"),
        os.environ.get("API_AUDIENCE", "https://api.example"),
    )
    can_read = RequireToken(verifier, scopes=["items:read"])
    can_write = RequireToken(verifier, scopes=["items:write"])
    app = FastAPI(title="items")
    items = list(ITEMS)

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"hello": "anyone"}

    @app.get("/items")
    def list_items(claims: Annotated[dict[str, Any], Depends(can_read)]) -> dict[str, Any]:
        return {"items": items, "caller": claims["sub"]}

    @app.post("/items", status_code=201)
    def add_item(new: NewItem, claims: Annotated[dict[str, Any], Depends(can_write)]) -> dict[str, Any]:
        item = {"id": len(items) + 1, "name": new.name}
        items.append(item)
        return item

    return app


app = create_app()
