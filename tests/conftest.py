"""Shared fixtures: a fresh app on its own database and keys per test, the real CLI, and a live server process.

The schema always comes from the Alembic migrations (never ``create_all``). For speed, the migrated SQLite file
is built once per session and copied for each test. With ``IDP_TEST_DATABASE_URL`` set, PostgreSQL fixtures
create a uniquely named database and drop it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.cli import main as cli_main
from idp.extensions import db
from idp.services import users as users_service
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL")

requires_postgres = pytest.mark.skipif(not PG_URL, reason="IDP_TEST_DATABASE_URL not set (no PostgreSQL)")
requires_redis = pytest.mark.skipif(not REDIS_URL, reason="IDP_TEST_REDIS_URL not set (no Redis)")

# argon2id at the product's cost (SPEC §10) takes a fifth of a second per hash or verification on a CI machine, and
# the in-process tests create users and sign in hundreds of times. They hash at argon2's smallest cost
# instead, unless marked ``product_password_cost`` (the tests of the stored hashes themselves). The product's
# parameters are never changed: servers and commands run as processes, and fixtures wider than one test, hash at
# full cost. The hasher is changed in place, so a test that imported it sees the cost its passwords get.
CHEAP_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "product_password_cost: hash passwords in-process at the product's argon2 cost (SPEC §10)"
    )


@pytest.fixture(autouse=True)
def _cheap_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("product_password_cost"):
        return
    # argon2-cffi keeps a PasswordHasher's parameters in ``_parameters``; setattr fails loudly if that changes.
    monkeypatch.setattr(users_service.password_hasher, "_parameters", CHEAP_PASSWORD_HASHER._parameters)


@contextmanager
def isolated_environment(directory: Path) -> Iterator[None]:
    """No IDP_* setting from the developer's shell leaks in, and ``directory`` is the working directory, so no
    instance/ or .env of the checkout is read. Per test it is automatic; fixtures of a wider scope use it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("IDP_") and not name.startswith("IDP_TEST_"):
                patch.delenv(name)
        patch.chdir(directory)
        yield


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path) -> Iterator[None]:
    with isolated_environment(tmp_path):
        yield


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


@pytest.fixture(scope="session")
def template_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One keyring generated per session, whose key files every test's fresh keyring reuses: generating two RSA
    keys is most of the cost of a fresh installation."""
    directory = tmp_path_factory.mktemp("template") / "keys"
    init_keyring(KeyStore(directory), 2048)
    return directory


def fresh_keyring(template: Path, directory: Path) -> None:
    """The keyring ``init_keyring`` would make now, with the key files of ``template``: same files and states,
    every time in the manifest set to now (a key's age decides when it may be rotated in, SPEC §8)."""
    shutil.copytree(template, directory)
    store = KeyStore(directory)
    now = datetime.now(UTC).isoformat()
    records = store.read_manifest()
    store.write_manifest([replace(r, created_at=now, activated_at=r.activated_at and now) for r in records])


def fresh_installation(root: Path, migrated_sqlite: Path, template_keys: Path) -> dict[str, str]:
    """Settings of a fresh installation under ``root``: migrated database, initialised keyring."""
    values = base_settings(root)
    copy_sqlite(migrated_sqlite, root / "idp.db")
    fresh_keyring(template_keys, Path(values["IDP_KEYS_DIR"]))
    return values


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path, template_keys: Path) -> dict[str, str]:
    """Settings of a fresh installation: migrated database, initialised keyring, under ``tmp_path``."""
    return fresh_installation(tmp_path, migrated_sqlite, template_keys)


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


@contextmanager
def pg_database() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database, dropped on exit (skips the test without PostgreSQL)."""
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database for one test."""
    with pg_database() as url:
        yield url


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
            start_new_session=True,  # its own process group, so stop() can reach workers whose parent is gone
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
        """SIGTERM, as a service manager stops it; then SIGKILL for whatever is left of its process group (a
        worker whose main process died first would otherwise outlive the test, orphaned)."""
        self._log.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def live_server(settings: dict[str, str]) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    try:
        yield server
    finally:
        server.stop()
