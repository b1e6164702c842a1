"""Fixtures of the hardening tests: the web app and user of the sign-in page tests, and one installation (and
live server) shared by a whole module where starting one per test would cost more than the tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from idp.config import SETTINGS
from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.conftest import LiveServer, base_settings
from tests.pages.fixtures import alice, browser, web

__all__ = ["alice", "browser", "live_server_for", "module_settings", "web"]

# The hardening suites send many failing requests on purpose; the limits of SPEC §10 would turn them into 429s
# before they reach the code under test. (Settings unknown to this version of idp are left out.)
GENEROUS_LIMITS = {
    "IDP_RATE_LIMIT_LOGIN_IP": "100000 per minute",
    "IDP_RATE_LIMIT_LOGIN_USER": "100000 per minute",
    "IDP_RATE_LIMIT_CLIENT_AUTH": "100000 per minute",
}


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> dict[str, str]:
    """Like the ``settings`` fixture, for a whole module, with generous rate limits."""
    root = tmp_path_factory.mktemp("installation")
    values = base_settings(root)
    shutil.copy(migrated_sqlite, root / "idp.db")
    init_keyring(KeyStore(values["IDP_KEYS_DIR"]), 2048)
    known = {setting.name for setting in SETTINGS}
    return {**values, **{name: value for name, value in GENEROUS_LIMITS.items() if name in known}}


def live_server_for(values: dict[str, str]) -> LiveServer:
    """A live server on ``values`` alone: no ``IDP_*`` variable of the developer's shell and no ``.env`` of the
    working directory (module fixtures run outside the per-test isolation of ``tests/conftest.py``)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("IDP_") and not name.startswith("IDP_TEST_"):
                patch.delenv(name)
        patch.chdir(Path(values["IDP_INSTANCE_DIR"]).parent)
        return LiveServer(values)
