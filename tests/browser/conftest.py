"""Fixtures of the real-browser tests: Debian's Chromium driven by Playwright against a live ``idp serve``.

One installation and one browser serve the whole session (a server start and a browser launch cost seconds);
each test gets a fresh browser context, so no cookie or consent carries over. Every flow runs twice: with
JavaScript enabled and disabled (SPEC §5: the pages work without JavaScript).

The browser is ``/usr/bin/chromium`` (``.ci/run`` installs it with apt-get when missing); the browsers that
``playwright install`` downloads are not used. Without it, or without Playwright, the tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.conftest import base_settings, copy_sqlite

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright  # noqa: E402

from tests.browser.support import (  # noqa: E402
    AXE_PREFIX,
    AXE_SCRIPT,
    Callbacks,
    Installation,
    installation,
    new_context,
)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Installation]:
    """A fresh installation (migrated database, keyring) behind one live server for the whole session."""
    root = tmp_path_factory.mktemp("browser")
    settings = base_settings(root)
    copy_sqlite(migrated_sqlite, root / "idp.db")
    init_keyring(KeyStore(settings["IDP_KEYS_DIR"]), 2048)
    found = installation(settings)
    try:
        yield found
    finally:
        found.server.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    # Chromium refuses to start its sandbox as root (containers, CI).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(params=["javascript", "no-javascript"])
def context(request: pytest.FixtureRequest, chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile, with JavaScript on and off."""
    browser_context = new_context(chromium, java_script_enabled=request.param == "javascript")
    try:
        yield browser_context
    finally:
        browser_context.close()


@pytest.fixture
def callbacks(context: BrowserContext) -> Callbacks:
    return Callbacks().intercept(context)


@pytest.fixture
def page(context: BrowserContext, callbacks: Callbacks) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core from the npm registry, installed under test-output/ (never committed) when missing."""
    if not AXE_SCRIPT.exists() and shutil.which("npm"):
        with contextlib.suppress(subprocess.TimeoutExpired):  # an offline registry: skip below
            subprocess.run(
                ["npm", "install", "--prefix", str(AXE_PREFIX), "--no-audit", "--no-fund", "axe-core"],
                capture_output=True,
                timeout=120,
                check=False,
            )
    if not AXE_SCRIPT.exists():
        pytest.skip("axe-core is not installed and npm could not install it (npm install --prefix test-output/node)")
    return AXE_SCRIPT
