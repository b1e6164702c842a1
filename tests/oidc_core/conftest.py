"""Fixtures of the OIDC browser-flow tests: the same web app, user and browsers as the sign-in page tests."""

from tests.pages.fixtures import alice, browser, new_browser, web

__all__ = ["alice", "browser", "new_browser", "web"]
