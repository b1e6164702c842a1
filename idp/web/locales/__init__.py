"""The words of the pages, one catalog per language; ``en`` is the reference every other catalog must match key
for key (tests/unit/test_i18n.py). To add a language, copy ``en.py`` to ``<tag>.py``, translate the values, keep
the ``{placeholders}``, and list the module in ``CATALOGS``."""

from __future__ import annotations

from idp.web.locales import de, en

CATALOGS: dict[str, dict[str, str]] = {"en": en.MESSAGES, "de": de.MESSAGES}
DEFAULT_LOCALE = "en"
