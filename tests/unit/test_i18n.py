"""The words of the pages (idp/web/locales) and how their language is chosen (idp/web/i18n.py)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from werkzeug.datastructures import LanguageAccept

from idp.web.i18n import Translator, negotiate
from idp.web.locales import CATALOGS, DEFAULT_LOCALE

IDP = Path(__file__).resolve().parents[2] / "idp"
# Keys named literally in templates (t("…")) and views (error_page("…"), translator()("…"), InvalidLogoutRequest).
USED_KEY = re.compile(r"""(?:\bt|\)|error_page|InvalidLogoutRequest)\(\s*"([a-z_]+\.[a-z_]+)""")
SCOPE_KEYS = {"scope.openid", "scope.profile", "scope.email", "scope.offline_access"}  # looked up by scope name


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def used_keys() -> set[str]:
    sources = [*IDP.glob("templates/*.html"), IDP / "web" / "pages.py"]
    return {key for path in sources for key in USED_KEY.findall(path.read_text("utf-8"))}


@pytest.mark.parametrize("locale", sorted(set(CATALOGS) - {DEFAULT_LOCALE}))
def test_every_catalog_has_exactly_the_english_keys_and_placeholders(locale):
    reference, catalog = CATALOGS[DEFAULT_LOCALE], CATALOGS[locale]
    assert set(catalog) == set(reference)
    for key, text in reference.items():
        assert placeholders(catalog[key]) == placeholders(text), key
        assert catalog[key].strip(), key


def test_every_key_the_pages_use_exists_and_every_key_is_used():
    used = used_keys()
    assert used, "the key pattern found nothing: it no longer matches the templates"
    assert used - set(CATALOGS[DEFAULT_LOCALE]) == set()
    assert set(CATALOGS[DEFAULT_LOCALE]) - used - SCOPE_KEYS == set()


@pytest.mark.parametrize(
    ("ui_locales", "accept", "chosen"),
    [
        (None, None, "en"),
        ("de", None, "de"),
        ("fr de en", None, "de"),  # the first one idp has, in the client's order
        ("en de", [("de", 1)], "en"),  # ui_locales beats Accept-Language
        ("de-CH", None, "de"),  # a regional tag falls back to its language
        ("DE-at", None, "de"),
        ("fr", [("de", 1)], "de"),  # nothing fits: the browser's preference
        ("fr", None, "en"),
        (None, [("fr", 1), ("de", 0.8), ("en", 0.5)], "de"),
        (None, [("de-DE", 1)], "de"),
        ("", [("de", 1)], "de"),
        ("x" * 5000, None, "en"),
        ("<script> \x00 ;; *", None, "en"),
        (" ".join(["fr"] * 30 + ["de"]), None, "en"),  # only the first 20 tags are read
    ],
)
def test_ui_locales_then_accept_language_then_english(ui_locales, accept, chosen):
    header = LanguageAccept(accept) if accept is not None else None
    assert negotiate(ui_locales, header) == chosen


def test_placeholders_are_filled_html_escaped():
    t = Translator("en")
    text = t("consent.heading", client="<b>Evil</b> & Co")
    assert str(text) == "Allow &lt;b&gt;Evil&lt;/b&gt; &amp; Co?"
    assert str(Translator("de")("consent.heading", client="Shop")) == "Shop erlauben?"
