"""idp: a self-hosted OAuth 2.0 authorization server and OpenID Connect provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI application. ``config`` overrides any ``IDP_*`` setting (tests pass a mapping).

    The server's imports happen here, not at package import, so ``import idp.verify`` in a resource server
    loads no Flask, SQLAlchemy or Authlib (SPEC §11).
    """
    from flask import Flask

    from idp.app_setup import (
        configure_blueprints,
        configure_cors,
        configure_database,
        configure_errors,
        configure_keyring,
        configure_limits,
        configure_logging,
        configure_metrics,
        configure_proxy_fix,
        configure_requests,
        configure_settings,
        configure_token_lane,
    )

    app = Flask(__name__)
    configure_settings(app, config)
    configure_logging(app)
    configure_database(app)
    configure_keyring(app)
    configure_requests(app)
    configure_metrics(app)
    configure_errors(app)
    configure_limits(app)
    configure_blueprints(app)
    configure_cors(app)
    configure_token_lane(app)
    configure_proxy_fix(app)
    return app


def create_server_app() -> Flask:
    """The application as a server's workers load it (``idp serve``, ``wsgi.py``): :func:`create_app` plus the
    one-time work that must not fall on the first request. The stand-in password hash is made here, so the first
    sign-in with an unknown username takes no longer than any other (SPEC §10), while ``idp`` commands, which
    build the app too, do not pay for it.
    """
    from idp.services.login import dummy_hash

    app = create_app()
    dummy_hash()
    return app
