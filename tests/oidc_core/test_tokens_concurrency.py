"""Concurrent redemption of one code and concurrent refresh with one token against a live server on SQLite
(SPEC §7: exactly one succeeds). ``tests/postgres/`` runs the same checks across processes on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from idp.models import User
from tests.conftest import LiveServer
from tests.oidc_support import check_concurrent_code_redemption, check_concurrent_refresh
from tests.pages.support import WebApp


@pytest.fixture
def grace_server(settings: dict[str, str], web: WebApp, alice: User) -> Iterator[LiveServer]:
    server = LiveServer({**settings, "IDP_REFRESH_TOKEN_REUSE_GRACE": "30"})
    try:
        yield server
    finally:
        server.stop()


def test_one_of_concurrent_code_redemptions_wins_and_the_rest_revoke_it(
    web: WebApp, alice: User, live_server: LiveServer
) -> None:
    check_concurrent_code_redemption(live_server.url, web)


def test_one_of_concurrent_refreshes_wins_and_the_reuse_revokes_the_family(
    web: WebApp, alice: User, live_server: LiveServer
) -> None:
    check_concurrent_refresh(live_server.url, web, grace=False)


def test_one_of_concurrent_refreshes_wins_and_keeps_working_within_grace(web: WebApp, grace_server: LiveServer) -> None:
    check_concurrent_refresh(grace_server.url, web, grace=True)
