"""Fixtures of the sign-in page tests (see :mod:`tests.pages.fixtures`)."""

from tests.pages.fixtures import alice, browser, new_browser, web

__all__ = ["alice", "browser", "new_browser", "web"]
