"""Liveness and readiness probes (SPEC §5)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.extensions import db
from idp.services.keystore import KeyringError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing else is checked, so a slow database never restarts a healthy worker."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to serve tokens: the database answers and a signing key is loaded."""
    checks = {"database": "ok", "keys": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        checks["database"] = "unavailable"
    finally:
        db.session.rollback()
    try:
        current_app.extensions["idp.keyring"].current()
    except KeyringError:
        checks["keys"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    if not ready:
        response.headers["Retry-After"] = "5"
    return response, 200 if ready else 503
