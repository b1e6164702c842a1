"""An installation on a fresh PostgreSQL database (``pg_url``): migrated with Alembic, its own keyring, an
in-process app for setup and database checks, and live servers with two granian worker processes so that races
run across processes, as on a multi-node deployment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from idp import create_app
from idp.extensions import db
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.conftest import IsolatedClient, LiveServer, base_settings, isolated_environment, migrate, pg_database


def pg_installation(root: Path, url: str) -> dict[str, str]:
    """The settings of an installation under ``root`` on the empty database ``url``, migrated, with a keyring."""
    values = base_settings(root, url)
    migrate(values)
    init_keyring(KeyStore(values["IDP_KEYS_DIR"]), 2048)
    return values


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str) -> dict[str, str]:
    return pg_installation(tmp_path, pg_url)


@pytest.fixture(scope="module")
def module_pg_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Like ``pg_settings``, for a whole module whose tests share one installation (each registering its own
    clients and users), where starting servers per test would cost more than the tests."""
    root = tmp_path_factory.mktemp("installation")
    with pg_database() as url:
        with isolated_environment(root):
            values = pg_installation(root, url)
        yield values


@pytest.fixture
def pg_app(pg_settings: dict[str, str]) -> Iterator[Flask]:
    application = create_app(pg_settings)
    application.test_client_class = IsolatedClient
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def pg_server(pg_settings: dict[str, str], pg_app: Flask) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on the PostgreSQL installation (two workers), some settings overridden; all are stopped
    (before the database is dropped)."""
    servers: list[LiveServer] = []

    def start(**overrides: str) -> LiveServer:
        servers.append(LiveServer({**pg_settings, **overrides}, workers=2))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
