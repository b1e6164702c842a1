"""Fixtures of the ``idp.verify`` suite: a live idp behind a counting front, and a client-credentials client.

Per test: ``settings`` is overridden so the server's issuer is the front's address (see ``support.py``),
``start_idp(**overrides)`` starts a server with extra settings (``IDP_JWKS_MAX_AGE``), ``idp`` is the default
one. Per module: ``shared_idp`` and ``shared_svc``, for tests that only issue and verify tokens and so can share
one installation (a live server costs seconds to start on the build machine); ``shared_app`` is its app context.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from idp import create_app
from idp.extensions import db
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.conftest import LiveServer, base_settings
from tests.oauth_support import Service, service
from tests.verify.support import API, OTHER_API, SCOPES, Idp, IssuerFront


@pytest.fixture
def front() -> Iterator[IssuerFront]:
    proxy = IssuerFront()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def settings(settings: dict[str, str], front: IssuerFront) -> dict[str, str]:
    return {**settings, "IDP_ISSUER": front.url}


@pytest.fixture
def start_idp(settings: dict[str, str], front: IssuerFront) -> Iterator[Callable[..., Idp]]:
    started: list[LiveServer] = []

    def start(**overrides: str) -> Idp:
        server = LiveServer({**settings, **overrides})
        started.append(server)
        front.upstream = server.url
        return Idp(server, front, Path(settings["IDP_KEYS_DIR"]))

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def idp(start_idp: Callable[..., Idp]) -> Idp:
    return start_idp()


def items_service() -> Service:
    """A client-credentials client allowed ``items:read items:write`` on two APIs (``API`` by default)."""
    return service(scope=SCOPES, audiences=[API, OTHER_API])


@pytest.fixture
def svc(app: Flask) -> Service:
    return items_service()


@pytest.fixture(scope="module")
def _shared(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[tuple[Idp, Flask]]:
    root = tmp_path_factory.mktemp("verify")
    front = IssuerFront()
    values = {**base_settings(root), "IDP_ISSUER": front.url}
    shutil.copy(migrated_sqlite, root / "idp.db")
    init_keyring(KeyStore(values["IDP_KEYS_DIR"]), 2048)
    server = LiveServer(values)
    front.upstream = server.url
    application = create_app(values)
    try:
        yield Idp(server, front, Path(values["IDP_KEYS_DIR"])), application
    finally:
        server.stop()
        front.stop()
        with application.app_context():
            db.engine.dispose()


@pytest.fixture(scope="module")
def shared_idp(_shared: tuple[Idp, Flask]) -> Idp:
    return _shared[0]


@pytest.fixture
def shared_app(_shared: tuple[Idp, Flask]) -> Iterator[Flask]:
    application = _shared[1]
    with application.app_context():
        yield application
        db.session.remove()


@pytest.fixture(scope="module")
def shared_svc(_shared: tuple[Idp, Flask]) -> Service:
    with _shared[1].app_context():
        created = items_service()
        db.session.remove()
    return created
