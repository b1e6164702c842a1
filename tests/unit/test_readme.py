"""The README's configuration table is the registry's, so documentation and code never drift."""

from __future__ import annotations

from pathlib import Path

from idp.config import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_registry():
    text = README.read_text("utf-8")
    start = text.index("<!-- settings-table")
    start = text.index("\n", start) + 1
    end = text.index("<!-- /settings-table -->")
    assert text[start:end].strip() == settings_table()
