"""Branding by configuration (``IDP_BRAND_*``), the client's logo on the consent page, and the pages' language
(OIDC Core §3.1.2.1 ``ui_locales``, then ``Accept-Language``), observed as a browser sees them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.models import User
from idp.services.clients import ClientSpec, update_client
from tests.pages.support import (
    PASSWORD,
    Browser,
    WebApp,
    assert_error_page,
    assert_redirect_error,
    auth_params,
    id_token_for,
    web_app,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><script>alert(1)</script></svg>'
LOGO_URI = "https://cdn.example.com/brand/shop.png"


def title(response: Any) -> str:
    found = re.search(r"<title>(.*?)</title>", response.get_data(as_text=True), re.S)
    assert found, response.get_data(as_text=True)[:300]
    return found.group(1).strip()


def html_lang(response: Any) -> str:
    found = re.search(r'<html lang="([^"]+)">', response.get_data(as_text=True))
    assert found
    return found.group(1)


def stylesheet_url(response: Any) -> str:
    links = re.findall(r'<link rel="stylesheet" href="([^"]+)">', response.get_data(as_text=True))
    assert len(links) == 1, links  # one stylesheet, from idp itself
    return str(links[0])


def login_page(browser: Browser, params: dict[str, str], **headers: str) -> Any:
    response = browser.authorize(params)
    assert response.status_code == 302 and response.location.startswith("/login?"), response.location
    page = browser.client.get(response.location, headers=headers)
    assert page.status_code == 200
    return page


def consent_page(browser: Browser, params: dict[str, str]) -> Any:
    response = browser.sign_in(browser.authorize(params))
    response = browser.get(response.location)
    assert response.location.startswith("/consent?"), response.location
    page = browser.get(response.location)
    assert page.status_code == 200
    return page


# --- branding ----------------------------------------------------------------------------------------------


@pytest.fixture
def branded(settings: dict[str, str], tmp_path: Path) -> dict[str, str]:
    logo = tmp_path / "acme.png"
    logo.write_bytes(PNG)
    return {**settings, "IDP_BRAND_NAME": "Acme ID", "IDP_BRAND_COLOR": "#7a1f5c", "IDP_BRAND_LOGO": str(logo)}


def test_default_pages_carry_the_product_name_and_the_default_accent(browser: Browser, web: WebApp) -> None:
    page = login_page(browser, auth_params(web))
    assert title(page) == "Sign in · idp"
    assert '<p class="product">idp</p>' in page.get_data(as_text=True)
    assert "/branding/logo" not in page.get_data(as_text=True)
    css = browser.client.get(stylesheet_url(page))
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert b"--accent: #1f5fbf; --accent-dark: #194c99;" in css.data
    assert browser.client.get("/branding/logo").status_code == 404


def test_brand_name_colour_and_logo_come_from_configuration(branded: dict[str, str], web_of: Any) -> None:
    _, client, webapp = web_of(branded)
    page = login_page(Browser(client), auth_params(webapp))
    text = page.get_data(as_text=True)
    assert title(page) == "Sign in · Acme ID"
    logo_url = re.search(r'<img class="brand-logo" src="([^"]+)" alt="">Acme ID</p>', text)
    assert logo_url, text[:800]

    css = client.get(stylesheet_url(page))
    assert b".card {" in css.data  # the base stylesheet, with the brand's colours after it
    assert css.data.rstrip().endswith(b":root { --accent: #7a1f5c; --accent-dark: #62194a; }")
    assert css.headers["Cache-Control"] == "public, max-age=86400"

    logo = client.get(logo_url.group(1))
    assert logo.status_code == 200 and logo.data == PNG and logo.mimetype == "image/png"
    assert logo.headers["X-Content-Type-Options"] == "nosniff"
    assert logo.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def test_a_new_colour_is_a_new_stylesheet_url(settings: dict[str, str], web_of: Any) -> None:
    urls = set()
    for colour in ("#1f5fbf", "#7a1f5c"):
        _, client, webapp = web_of({**settings, "IDP_BRAND_COLOR": colour})
        urls.add(stylesheet_url(login_page(Browser(client), auth_params(webapp))))
    assert len(urls) == 2


def test_an_svg_logo_is_served_sandboxed_so_its_script_cannot_run(
    settings: dict[str, str], tmp_path: Path, web_of: Any
) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_bytes(SVG)
    app, client, _ = web_of({**settings, "IDP_BRAND_LOGO": str(logo)})
    response = client.get(app.extensions["idp.branding"].logo_url)
    assert response.mimetype == "image/svg+xml" and response.data == SVG
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none' governs scripts


@pytest.fixture
def web_of(app: Flask) -> Any:
    """Another installation built from ``settings`` (same database): its app, a client and a web app in it."""
    from idp import create_app

    def build(settings: dict[str, str]) -> tuple[Flask, FlaskClient, WebApp]:
        other = create_app(settings)
        with other.app_context():
            registered = web_app(name=f"Web {len(settings)}")
        return other, other.test_client(), registered

    return build


# --- the client's logo on the consent page ------------------------------------------------------------------


def test_consent_shows_the_clients_logo_and_allows_images_from_its_origin_only(
    browser: Browser, web: WebApp, alice: User
) -> None:
    update_client(web.client_id, ClientSpec(logo_uri=LOGO_URI))
    page = consent_page(browser, auth_params(web))
    assert f'<img class="client-logo" src="{LOGO_URI}" alt="" referrerpolicy="no-referrer">' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert csp.endswith("; img-src 'self' https://cdn.example.com")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_consent_without_a_logo_loads_nothing_from_elsewhere(browser: Browser, web: WebApp, alice: User) -> None:
    page = consent_page(browser, auth_params(web))
    assert "client-logo" not in page.text
    assert "img-src" not in page.headers["Content-Security-Policy"]


def test_login_page_never_shows_the_clients_logo(browser: Browser, web: WebApp) -> None:
    """The logo belongs to the consent page, where the user decides about that client; the login page loads
    nothing from a client's origin."""
    update_client(web.client_id, ClientSpec(logo_uri=LOGO_URI))
    page = login_page(browser, auth_params(web))
    assert LOGO_URI not in page.get_data(as_text=True)
    assert "img-src" not in page.headers["Content-Security-Policy"]


# --- languages ----------------------------------------------------------------------------------------------


def test_ui_locales_de_gives_a_german_login_page(browser: Browser, web: WebApp) -> None:
    page = login_page(browser, auth_params(web, ui_locales="de"))
    text = page.get_data(as_text=True)
    assert html_lang(page) == "de" and title(page) == "Anmelden · idp"
    assert '<label for="username">Benutzername</label>' in text and '<label for="password">Passwort</label>' in text
    assert "um mit <strong>Web App</strong> fortzufahren" in text


def test_the_language_survives_a_wrong_password_and_reaches_the_consent_page(
    browser: Browser, web: WebApp, alice: User
) -> None:
    params = auth_params(web, ui_locales="fr-CA de-CH")
    page = login_page(browser, params)
    wrong = browser.submit(page, username="alice", password="not the password")
    assert html_lang(wrong) == "de" and "Benutzername oder Passwort ist falsch." in wrong.get_data(as_text=True)
    assert title(wrong) == "Fehler: Anmelden · idp"

    signed_in = browser.submit(wrong, username="alice", password=PASSWORD)
    consent = browser.get(browser.get(signed_in.location).location)
    text = consent.get_data(as_text=True)
    assert html_lang(consent) == "de"
    assert "Web App erlauben?" in text and "Wissen, wer Sie sind" in text and "Ihren Namen" in text
    assert ">Erlauben</button>" in text and ">Ablehnen</button>" in text


def test_accept_language_is_used_when_ui_locales_is_absent(browser: Browser, web: WebApp) -> None:
    page = login_page(browser, auth_params(web), **{"Accept-Language": "fr;q=1, de;q=0.8, en;q=0.5"})
    assert html_lang(page) == "de"
    english = login_page(browser, auth_params(web, ui_locales="en"), **{"Accept-Language": "de"})
    assert html_lang(english) == "en" and title(english) == "Sign in · idp"


@pytest.mark.parametrize("ui_locales", ["fr", "x" * 3000, "<script>", "de de de " * 50, ""])
def test_unknown_or_hostile_ui_locales_fall_back_to_english(browser: Browser, web: WebApp, ui_locales: str) -> None:
    page = login_page(browser, auth_params(web, ui_locales=ui_locales))
    expected = "de" if ui_locales.startswith("de") else "en"
    assert html_lang(page) == expected
    assert "<script>" not in page.get_data(as_text=True)


def test_error_page_of_an_authorization_request_speaks_its_language(browser: Browser) -> None:
    page = browser.client.get("/authorize", query_string={"client_id": "nobody", "ui_locales": "de"})
    assert page.status_code == 400 and html_lang(page) == "de"
    text = page.get_data(as_text=True)
    assert "Wir können nicht fortfahren" in text and "Die Anmeldeanfrage ist ungültig:" in text
    assert_error_page(browser.client.get("/authorize", query_string={"client_id": "nobody"}))  # English default


def test_denied_consent_is_still_access_denied_whatever_the_language(
    browser: Browser, web: WebApp, alice: User
) -> None:
    params = auth_params(web, ui_locales="de")
    response = browser.run(browser.authorize(params), decision="deny")
    assert_redirect_error(response, web.redirect_uri, "access_denied", params["state"])


def test_logout_confirmation_and_signed_out_page_honour_ui_locales(browser: Browser, web: WebApp, alice: User) -> None:
    id_token_for(browser, web)
    confirm = browser.client.get("/logout", query_string={"ui_locales": "de"})
    assert html_lang(confirm) == "de" and "Abmelden?" in confirm.get_data(as_text=True)
    assert "Sie sind als <strong>alice</strong> angemeldet." in confirm.get_data(as_text=True)
    done = browser.submit(confirm)
    assert done.status_code == 200 and html_lang(done) == "de"
    assert "Sie sind abgemeldet" in done.get_data(as_text=True)


def test_discovery_lists_the_languages_of_the_pages(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["ui_locales_supported"] == ["en", "de"]


def test_a_client_name_with_markup_is_escaped_inside_translated_sentences(browser: Browser, alice: User) -> None:
    hostile = web_app(name='<img src=x onerror="alert(1)">')
    page = consent_page(browser, auth_params(hostile, ui_locales="de"))
    text = page.get_data(as_text=True)
    assert "<img src=x" not in text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; erlauben?" in text
