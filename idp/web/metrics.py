"""``/metrics``: Prometheus text exposition (SPEC §5). Operational data, not secrets; restrict it to the
monitoring network at the proxy (README "Running in production")."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from idp.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = exposition(current_app.extensions["idp.keyring"])
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
