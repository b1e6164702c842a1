"""A small Flask API whose routes are protected by idp access tokens, verified locally with ``idp.verify``.

    GET  /public   anyone
    GET  /items    a token with scope items:read
    POST /items    a token with scope items:write

Configuration: ``API_ISSUER`` (default ``http://127.0.0.1:5000``, what ``make run`` serves) and ``API_AUDIENCE``
(default ``https://api.example``, this API's identifier, registered as the client's ``--audience``).
Run: ``flask --app examples/flask_api/app.py run --port 8000`` (see README.md beside this file).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, g, request

from idp.verify import TokenVerifier
from idp.verify_flask import require_token

ITEMS = [{"id": 1, "name": "first item"}]


def create_app(verifier: TokenVerifier | None = None) -> Flask:
    verifier = verifier or TokenVerifier(
        os.environ.get("API_ISSUER", "http://127.0.0.1:5000"),
        os.environ.get("API_AUDIENCE", "https://api.example"),
    )
    app = Flask(__name__)
    items = list(ITEMS)

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"hello": "anyone"}

    @app.get("/items")
    @require_token(verifier, scopes=["items:read"])
    def list_items() -> dict[str, Any]:
        return {"items": items, "caller": g.token_claims["sub"]}

    @app.post("/items")
    @require_token(verifier, scopes=["items:write"])
    def add_item() -> tuple[dict[str, Any], int]:
        item = {"id": len(items) + 1, "name": str((request.get_json(silent=True) or {}).get("name", "unnamed"))}
        items.append(item)
        return item, 201

    return app


app = create_app()
