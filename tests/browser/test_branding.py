"""A branded installation (``IDP_BRAND_NAME``, ``IDP_BRAND_COLOR``, ``IDP_BRAND_LOGO``) in German
(``ui_locales=de``), with the client's logo on the consent page, in a real browser with JavaScript on and off:
a person signs in and allows; the colours and both logos load under the pages' CSP; screenshots at phone and
desktop widths; axe-core finds no serious violation.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from idp.services.keys import init_keyring
from idp.services.keystore import KeyStore
from tests.browser.support import (
    CLIENT_ORIGIN,
    VIEWPORTS,
    Callbacks,
    Installation,
    authorization_request,
    installation,
    new_context,
    screenshot_path,
)
from tests.browser.test_pages_look import BLOCKING, CSP, RUN_AXE
from tests.conftest import base_settings, copy_sqlite
from tests.pages.support import PASSWORD

BRAND = "Acme ID"
ACCENT = "#7a1f5c"
ACCENT_RGB = "rgb(122, 31, 92)"
CLIENT_LOGO = CLIENT_ORIGIN + "/static/logo.png"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG (RFC 2083): signature, IHDR, one zlib-compressed IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def branded(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("branded")
    (root / "acme.png").write_bytes(png(48, 48, (122, 31, 92)))
    settings = {
        **base_settings(root),
        "IDP_BRAND_NAME": BRAND,
        "IDP_BRAND_COLOR": ACCENT,
        "IDP_BRAND_LOGO": str(root / "acme.png"),
    }
    copy_sqlite(migrated_sqlite, root / "idp.db")
    init_keyring(KeyStore(settings["IDP_KEYS_DIR"]), 2048)
    found = installation(settings, logo_uri=CLIENT_LOGO)
    try:
        yield found
    finally:
        found.server.stop()


@pytest.fixture
def client_site(context: BrowserContext) -> Callbacks:
    """The client's site, which also serves its logo (registered after the callbacks, so it takes precedence)."""
    callbacks = Callbacks().intercept(context)
    logo = png(64, 64, (16, 110, 60))

    def answer(route: Route) -> None:
        route.fulfill(status=200, content_type="image/png", body=logo)

    context.route(CLIENT_LOGO, answer)
    return callbacks


def loaded(page: Page, selector: str) -> bool:
    return bool(page.locator(selector).evaluate("img => img.complete && img.naturalWidth > 0"))


def test_branded_german_sign_in_with_both_logos_under_the_csp(
    page: Page, branded: Installation, client_site: Callbacks
) -> None:
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if CSP in message.text else None)
    username = branded.new_user()
    request = authorization_request(branded.url, branded.webapp, ui_locales="de")
    page.goto(request.url)

    expect(page).to_have_title(f"Anmelden · {BRAND}")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_text("um mit Web App fortzufahren")).to_be_visible()
    assert loaded(page, "img.brand-logo")
    button = page.get_by_role("button", name="Anmelden")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == ACCENT_RGB
    page.get_by_label("Benutzername").fill(username)
    page.get_by_label("Passwort").fill("falsch")
    page.get_by_label("Passwort").press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Benutzername oder Passwort ist falsch.")
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    expect(page.get_by_role("heading", name="Web App erlauben?")).to_be_visible()
    expect(page.get_by_text("Ihre E-Mail-Adresse sehen")).to_be_visible()
    assert loaded(page, "img.client-logo") and loaded(page, "img.brand-logo")
    page.get_by_role("button", name="Erlauben", exact=True).click()

    query = client_site.arrived(page, branded.webapp.redirect_uri)
    assert query["code"] and query["state"] == request.state
    assert refused == []


def test_branded_german_pages_are_photographed_and_pass_axe(
    chromium: Browser, branded: Installation, axe_script: Path
) -> None:
    """Login and consent, branded and in German, at both widths: saved as ``branded-<page>-<viewport>.png``; axe
    (CSP bypassed in this context only, to inject it) reports no serious or critical violation."""
    context = new_context(chromium, bypass_csp=True)
    try:
        site = Callbacks().intercept(context)
        context.route(
            CLIENT_LOGO,
            lambda route: route.fulfill(status=200, content_type="image/png", body=png(64, 64, (16, 110, 60))),
        )
        page = context.new_page()
        found: dict[str, Any] = {}

        def visit(name: str) -> None:
            for viewport, size in VIEWPORTS.items():
                page.set_viewport_size(size)
                page.screenshot(path=screenshot_path(f"branded-{name}-{viewport}"), full_page=True)
                page.add_script_tag(path=axe_script)
                result = page.evaluate(RUN_AXE)
                assert result["passes"] > 0
                blocking = [v for v in result["violations"] if v["impact"] in BLOCKING]
                if blocking:
                    found[f"{name}-{viewport}"] = blocking

        page.goto(authorization_request(branded.url, branded.webapp, ui_locales="de").url)
        expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
        visit("login")
        page.get_by_label("Benutzername").fill(branded.new_user())
        page.get_by_label("Passwort").fill(PASSWORD)
        page.get_by_label("Passwort").press("Enter")
        expect(page.get_by_role("heading", name="Web App erlauben?")).to_be_visible()
        visit("consent")
        assert site.urls == []
    finally:
        context.close()
    assert found == {}
