"""A verifier across ``idp keys rotate`` and ``idp keys prune`` (SPEC §8, §11).

The issuer publishes its ``next`` key before it signs with it, so a verifier that fetched the JWKS before the
rotation verifies every new token from its cache, with no unknown-``kid`` refetch. Pruning unpublishes a retired
key; a verifier with a fresh view of the JWKS then refuses that key's tokens. The server runs with
``IDP_JWKS_MAX_AGE=0`` so the rotation may happen at once (see ``tests/keys``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from idp.services.keystore import KeyStore
from idp.verify import InvalidToken
from tests.conftest import Cli
from tests.keys.conftest import age_key, kid_in, make_rotatable, wait_until
from tests.oauth_support import Service
from tests.verify.support import TIMEOUT, Idp, unverified

NEW_TOKENS = 10


def kid_of(token: str) -> str:
    return str(unverified(token)[0]["kid"])


def published(idp: Idp) -> set[str]:
    return {jwk["kid"] for jwk in requests.get(idp.server.url + "/jwks", timeout=TIMEOUT).json()["keys"]}


def test_a_cached_jwks_verifies_tokens_of_the_rotated_in_key_and_pruned_keys_are_refused(
    start_idp: Callable[..., Idp], settings: dict[str, str], svc: Service
) -> None:
    idp = start_idp(IDP_JWKS_MAX_AGE="0")
    cli = Cli({**settings, "IDP_JWKS_MAX_AGE": "0"})
    store = KeyStore(settings["IDP_KEYS_DIR"])
    keys_dir = Path(settings["IDP_KEYS_DIR"])
    old_kid, upcoming = kid_in("active", keys_dir), kid_in("next", keys_dir)

    old_token = idp.token(svc.client_id, svc.key)
    assert kid_of(old_token) == old_kid
    verifier = idp.verifier()  # refetches at most every 30 s: the whole rotation happens within that
    verifier.verify(old_token)
    assert idp.front.jwks_fetches == 1

    make_rotatable(store)
    rotated = cli("keys", "rotate", "--json")
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["active"] == upcoming

    new_tokens: list[str] = []

    def signs_with_the_new_key() -> bool:
        token = idp.token(svc.client_id, svc.key)
        assert verifier.verify(token)["sub"] == svc.client_id  # before and after the server's reload
        if kid_of(token) == upcoming:
            new_tokens.append(token)
        return bool(new_tokens)

    assert wait_until(signs_with_the_new_key, timeout=5, interval=0.1)
    new_tokens += [idp.token(svc.client_id, svc.key) for _ in range(NEW_TOKENS)]
    assert {kid_of(t) for t in new_tokens} == {upcoming}
    for token in new_tokens:
        assert verifier.verify(token)["sub"] == svc.client_id
    assert verifier.verify(old_token)["sub"] == svc.client_id  # the retired key is still published
    assert idp.front.jwks_fetches == 1 and verifier.jwks_fetches == 1  # no unknown-kid miss at all

    age_key(store, old_kid, retired_at=3600)  # as if the retired key's every token had expired
    pruned = cli("keys", "prune", "--json")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout) == {"pruned": [old_kid]}
    assert wait_until(lambda: old_kid not in published(idp), timeout=5, interval=0.1)

    fresh = idp.verifier()
    with pytest.raises(InvalidToken) as caught:
        fresh.verify(old_token)  # still within its exp: only the unpublished key is the reason
    assert caught.value.description == "the token's key is not published by the issuer"
    assert unverified(old_token)[1]["exp"] > time.time()
    assert fresh.verify(new_tokens[-1])["sub"] == svc.client_id
