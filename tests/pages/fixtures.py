"""Fixtures of the browser-side tests (sign-in pages and the OIDC flow they serve), imported by the conftest of
each folder that uses them: a web app, a user and browsers on a fresh installation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.models import User
from tests.pages.support import Browser, WebApp, user, web_app


@pytest.fixture
def web(app: Flask) -> WebApp:
    return web_app()


@pytest.fixture
def alice(app: Flask) -> User:
    return user("alice")


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


@pytest.fixture
def new_browser(app: Flask, client: FlaskClient) -> Callable[[], Browser]:
    """Another browser: its own cookies, and (through ``client``) the isolated test-client class."""
    return lambda: Browser(app.test_client())
