"""idp: a self-hosted OAuth 2.0 authorization server and OpenID Connect provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from idp.app_setup import (
    configure_blueprints,
    configure_database,
    configure_errors,
    configure_keyring,
    configure_logging,
    configure_requests,
    configure_settings,
    configure_token_lane,
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI application. ``config`` overrides any ``IDP_*`` setting (tests pass a mapping)."""
    app = Flask(__name__)
    configure_settings(app, config)
    configure_logging(app)
    configure_database(app)
    configure_keyring(app)
    configure_requests(app)
    configure_errors(app)
    configure_blueprints(app)
    configure_token_lane(app)
    return app
