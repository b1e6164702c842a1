"""Shared fixtures: a fresh app on its own database and keys per test, the real CLI, and a live server process.

The schema always comes from the Alembic migrations (never ``create_all``). For speed, the migrated SQLite file
is built once per session and copied for each test. With ``IDP_TEST_DATABASE_URL`` set, PostgreSQL fixtures
create a uniquely named database and drop it afterwards.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.cli import main as cli_main
from idp.extensions import db
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL")

requires_postgres = pytest.mark.skipif(not PG_URL, reason="IDP_TEST_DATABASE_URL not set (no PostgreSQL)")
requires_redis = pytest.mark.skipif(not REDIS_URL, reason="IDP_TEST_REDIS_URL not set (no Redis)")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IDP_* setting from the developer's shell leaks into a test, and no instance/ or .env is read."""
    for name in list(os.environ):
        if name.startswith("IDP_") and not name.startswith("IDP_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def base_settings(root: Path, database_url: str | None = None) -> dict[str, str]:
    return {
        "IDP_DATABASE_URL": database_url or f"sqlite:///{root / 'idp.db'}",
        "IDP_KEYS_DIR": str(root / "keys"),
        "IDP_INSTANCE_DIR": str(root / "instance"),
        "IDP_SECRET_KEY": "test-secret-key-" + "x" * 32,
        "IDP_LOG_FORMAT": "json",
    }


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy an SQLite database with SQLite's backup API: a plain file copy would miss commits still in the
    write-ahead log (idp runs SQLite in WAL mode)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def migrate(settings: dict[str, Any]) -> None:
    from flask_migrate import upgrade

    app = create_app(settings)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file at migration head, copied by every test that needs a database."""
    root = tmp_path_factory.mktemp("template")
    settings = base_settings(root)
    migrate(settings)
    return root / "idp.db"


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path) -> dict[str, str]:
    """Settings of a fresh installation: migrated database, initialised keyring, under ``tmp_path``."""
    values = base_settings(tmp_path)
    copy_sqlite(migrated_sqlite, tmp_path / "idp.db")
    init_keyring(KeyStore(values["IDP_KEYS_DIR"]), 2048)
    return values


@pytest.fixture
def app(settings: dict[str, str]) -> Iterator[Flask]:
    application = create_app(settings)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


class IsolatedClient(FlaskClient):
    """A test client whose requests do not share ``flask.g`` with the test's own app context.

    The ``app`` fixture keeps an app context pushed so tests can call services; Flask then reuses it for test
    requests, and per-request values cached in ``g`` (Flask-WTF's CSRF token) would leak between requests.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        from flask import g, has_app_context

        if has_app_context():
            g.pop("csrf_token", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask) -> Any:
    app.test_client_class = IsolatedClient
    return app.test_client()


class Cli:
    """Runs the real ``idp`` command in-process with the test's settings as its environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(cli_main, list(args), env=self.env, input=input, catch_exceptions=False)


@pytest.fixture
def cli(settings: dict[str, str]) -> Cli:
    return Cli(settings)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database for one test."""
    if not PG_URL:
        pytest.skip("IDP_TEST_DATABASE_URL not set (no PostgreSQL)")
    import sqlalchemy as sa

    name = f"idp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real ``idp serve`` process (granian) on a loopback port."""

    def __init__(self, env: dict[str, str], port: int | None = None, workers: int = 1) -> None:
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "IDP_ISSUER": env.get("IDP_ISSUER", self.url)}
        self.env = full_env
        self.log_path = Path(env["IDP_INSTANCE_DIR"]).parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "idp.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):
                # Timeout: the server accepts before its worker has booted (slow on a loaded machine).
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 20 s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self._log.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live_server(settings: dict[str, str]) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    try:
        yield server
    finally:
        server.stop()
