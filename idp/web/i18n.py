"""The language of the pages: OIDC Core §3.1.2.1 ``ui_locales`` first, then the browser's ``Accept-Language``
(RFC 9110 §12.5.4), then English. Catalogs live in :mod:`idp.web.locales`, one file per language.

``ui_locales`` is a space-separated list of BCP 47 tags in order of preference; a tag idp has no catalog for
is skipped, and a regional tag (``de-CH``) falls back to its language (``de``). Unknown or malformed values are
never an error: the page is shown in the next language that fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape
from werkzeug.datastructures import LanguageAccept

from idp.web.locales import CATALOGS, DEFAULT_LOCALE

SUPPORTED = tuple(CATALOGS)
MAX_UI_LOCALES = 20


def negotiate(ui_locales: str | None, accept_language: LanguageAccept | None = None) -> str:
    """The catalog to use: the first of ``ui_locales`` idp has, else the best ``Accept-Language`` match."""
    tags = (ui_locales or "").split()[:MAX_UI_LOCALES]
    if tags:
        # Descending qualities keep the client's order; LanguageAccept adds the primary-subtag fallback.
        preferred = LanguageAccept([(tag, 1 - i / 100) for i, tag in enumerate(tags)])
        match = preferred.best_match(SUPPORTED)
        if match:
            return match
    if accept_language is not None:
        match = accept_language.best_match(SUPPORTED)
        if match:
            return match
    return DEFAULT_LOCALE


@dataclass(frozen=True)
class Translator:
    """``t(key, **values)`` in templates and views: the catalog text with its placeholders filled, HTML-escaped
    unless a value is already :class:`Markup` (a ``<strong>`` the template wraps around a name, say)."""

    locale: str

    def __call__(self, key: str, **values: object) -> Markup:
        text = CATALOGS[self.locale].get(key) or CATALOGS[DEFAULT_LOCALE][key]
        escaped = escape(text)
        return escaped.format(**values) if values else escaped


def strong(value: object) -> Markup:
    """The ``strong`` template filter: a name set in bold inside a translated sentence, escaped."""
    return Markup("<strong>%s</strong>") % value
