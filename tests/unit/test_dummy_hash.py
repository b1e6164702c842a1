"""The stand-in hash that makes an unknown username cost one argon2 verification (SPEC §10, idp.services.login).

It is made when a server builds its app, not at import and not by the commands, and it always has the hasher's
current parameters: a stand-in cheaper than a real user's hash would let timing tell the two apart.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from argon2 import extract_parameters

from idp import create_app, create_server_app
from idp.services import login
from idp.services.users import password_hasher


@pytest.fixture
def no_dummy_yet(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[object, ...], str]:
    made: dict[tuple[object, ...], str] = {}
    monkeypatch.setattr(login, "_dummy_hashes", made)
    return made


def test_a_command_s_app_makes_no_stand_in_hash(
    settings: dict[str, str], no_dummy_yet: dict[tuple[object, ...], str]
) -> None:
    create_app(settings)
    assert no_dummy_yet == {}


def test_a_server_s_app_has_it_ready_at_the_hasher_s_parameters(
    settings: dict[str, str], no_dummy_yet: dict[tuple[object, ...], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    create_server_app()
    (dummy,) = no_dummy_yet.values()
    assert extract_parameters(dummy) == password_hasher._parameters
    assert login.dummy_hash() is dummy  # made once


def test_a_change_of_parameters_gets_a_stand_in_of_its_own(
    no_dummy_yet: dict[tuple[object, ...], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = login.dummy_hash()
    stronger = replace(password_hasher._parameters, time_cost=password_hasher.time_cost + 1)
    monkeypatch.setattr(password_hasher, "_parameters", stronger)
    second = login.dummy_hash()
    assert extract_parameters(second).time_cost == extract_parameters(first).time_cost + 1
    assert len(no_dummy_yet) == 2
