"""Screenshots of every page at phone and desktop widths under test-output/screenshots/ (for a person to look
at), and an axe-core audit of each page that fails on any serious or critical accessibility violation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from tests.browser.support import VIEWPORTS, Callbacks, Installation, new_context, screenshot_path, tour

PAGES = ["login", "login-error", "consent", "logout-confirm", "signed-out", "signed-in", "error"]
BLOCKING = {"serious", "critical"}
CSP = "Content Security Policy"
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return {passes: result.passes.length,
          violations: result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                   nodes: v.nodes.map(n => n.target.join(" "))}))};
}"""


def walk(
    chromium: Browser, site: Installation, visit: Callable[[Page, str], None], **options: bool
) -> tuple[list[str], list[str]]:
    """The tour of every page in a fresh context; ``visit`` is called on each page at each viewport in turn.
    Returns the pages seen and the Content Security Policy violations the browser reported on the way."""
    context = new_context(chromium, **options)
    try:
        page = context.new_page()
        seen: list[str] = []
        refused: list[str] = []
        page.on("console", lambda message: refused.append(message.text) if CSP in message.text else None)

        def at_each_size(name: str) -> None:
            seen.append(name)
            for viewport, size in VIEWPORTS.items():
                page.set_viewport_size(size)
                visit(page, f"{name}-{viewport}")

        tour(page, site, Callbacks().intercept(context), at_each_size)
        return seen, refused
    finally:
        context.close()


def test_every_page_is_photographed_with_its_stylesheet_under_the_csp(chromium: Browser, site: Installation) -> None:
    """The stylesheet loads under ``default-src 'self'`` (SPEC §10) with no CSP violation reported, and nothing
    overflows the viewport sideways (WCAG 2.2 §1.4.10 reflow); each page is saved as ``<page>-<viewport>.png``."""

    def photograph(page: Page, shot: str) -> None:
        card = page.locator("main")
        assert card.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)", shot
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (shot, overflow)
        page.screenshot(path=screenshot_path(shot), full_page=True)

    assert walk(chromium, site, photograph) == (PAGES, [])
    assert all(screenshot_path(f"{name}-{viewport}").stat().st_size for name in PAGES for viewport in VIEWPORTS)


def test_no_page_has_serious_accessibility_violations(chromium: Browser, site: Installation, axe_script: Path) -> None:
    """axe-core (its WCAG 2.x A/AA and best-practice rules) on every page at both widths: no violation of impact
    serious or critical. The page CSP is bypassed only in this context, so the audit script can be injected."""
    found: dict[str, list[dict[str, Any]]] = {}

    def audit(page: Page, shot: str) -> None:
        page.add_script_tag(path=axe_script)
        result = page.evaluate(RUN_AXE)
        assert result["passes"] > 0, shot  # the audit ran
        blocking = [v for v in result["violations"] if v["impact"] in BLOCKING]
        if blocking:
            found[shot] = blocking

    assert walk(chromium, site, audit, bypass_csp=True)[0] == PAGES
    assert found == {}
