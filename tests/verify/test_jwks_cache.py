"""How ``TokenVerifier`` fetches and caches the issuer's keys (SPEC §11), counted at the issuer's front door.

Discovery (OIDC Discovery 1.0 §4) once, then the JWKS (RFC 7517 §5) for its ``Cache-Control: max-age``
(RFC 9111 §5.2.2.1), one refetch for an unknown ``kid`` at most every ``refetch_interval``, one fetch however
many threads miss at once, stale keys kept while a refetch fails, and fetch failures reported without internals.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from idp.verify import InvalidToken, KeysUnavailable, TokenVerifier
from tests.conftest import free_port
from tests.oauth_support import Service
from tests.verify.support import API, TIMEOUT, Idp, attacker_key, rs256, unverified

THREADS = 16


def stranger(claims: dict[str, Any], kid: str = "unknown-kid") -> str:
    """A well-formed access token under a ``kid`` the issuer never published."""
    return rs256(attacker_key(), {"typ": "at+jwt", "kid": kid}, claims)


def all_at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """``count`` threads released together by a barrier; each result, or the exception it raised."""
    barrier = threading.Barrier(count)

    def run(_: int) -> Any:
        barrier.wait(timeout=TIMEOUT)
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_threads_missing_an_empty_cache_together_cause_one_fetch(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier()
    results = all_at_once(THREADS, lambda: verifier.verify(token))
    assert [r["jti"] for r in results] == [unverified(token)[1]["jti"]] * THREADS, results
    assert idp.front.discovery_fetches == 1
    assert idp.front.jwks_fetches == 1
    assert verifier.jwks_fetches == 1


def test_threads_meeting_an_unknown_kid_together_cause_one_refetch(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier(refetch_interval=2)
    verifier.verify(token)
    time.sleep(2.1)  # past the refetch interval, well within max-age (300 s)
    forged = stranger(unverified(token)[1])
    results = all_at_once(THREADS, lambda: verifier.verify(forged))
    assert all(isinstance(r, InvalidToken) for r in results), results
    assert {r.description for r in results} == {"the token's key is not published by the issuer"}
    assert idp.front.jwks_fetches == 2


def test_an_unknown_kid_refetches_at_most_once_per_interval(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key)
    forged = stranger(unverified(token)[1])
    verifier = idp.verifier(refetch_interval=1)
    verifier.verify(token)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    assert idp.front.jwks_fetches == 1  # within the interval: refused from the cache
    time.sleep(1.1)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    assert idp.front.jwks_fetches == 2
    assert verifier.verify(token)["jti"]  # known keys keep working from the cache
    assert idp.front.jwks_fetches == 2


def test_the_jwks_is_kept_for_its_max_age(start_idp: Callable[..., Idp], svc: Service) -> None:
    idp = start_idp(IDP_JWKS_MAX_AGE="2")
    assert requests.get(idp.server.url + "/jwks", timeout=TIMEOUT).headers["Cache-Control"] == "public, max-age=2"
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier(refetch_interval=0.5)
    for _ in range(5):
        verifier.verify(token)
    assert idp.front.jwks_fetches == 1
    time.sleep(2.2)
    verifier.verify(token)
    assert idp.front.jwks_fetches == 2
    assert idp.front.discovery_fetches == 1  # discovery is not refetched with the keys


def test_a_long_max_age_means_no_refetch_for_known_keys(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier(refetch_interval=0.2)
    verifier.verify(token)
    time.sleep(0.5)
    verifier.verify(token)
    assert idp.front.jwks_fetches == 1  # max-age=300


def test_max_age_zero_does_not_mean_a_fetch_per_request(start_idp: Callable[..., Idp], svc: Service) -> None:
    """The JWKS is never fetched more often than ``refetch_interval``, whatever the headers say."""
    idp = start_idp(IDP_JWKS_MAX_AGE="0")
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier()
    for _ in range(20):
        verifier.verify(token)
    assert idp.front.jwks_fetches == 1


def test_stale_keys_keep_working_while_a_refetch_fails(
    start_idp: Callable[..., Idp], svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    idp = start_idp(IDP_JWKS_MAX_AGE="1")
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier(refetch_interval=0.5)
    verifier.verify(token)
    idp.front.failing = True
    time.sleep(1.1)  # the cached JWKS is stale now
    with caplog.at_level(logging.WARNING, logger="idp.verify"):
        assert verifier.verify(token)["jti"]  # refetch attempted, failed, the stale key still verifies
        assert verifier.jwks_fetches == 2
        assert verifier.verify(token)["jti"]
        assert verifier.jwks_fetches == 2  # failed attempts are rate-limited too
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(stranger(unverified(token)[1]))
        assert caught.value.description == "the token's key is not published by the issuer"
    assert any("fetching the issuer's keys failed" in r.getMessage() for r in caplog.records)
    assert not any(token in r.getMessage() for r in caplog.records)

    idp.front.failing = False
    time.sleep(0.6)
    assert verifier.verify(token)["jti"]
    assert verifier.jwks_fetches == 3
    assert idp.front.discovery_fetches == 2  # after a failure the jwks_uri is discovered afresh


def test_an_unreachable_issuer_is_invalid_token_without_internals(svc: Service, idp: Idp) -> None:
    token = idp.token(svc.client_id, svc.key)
    port = free_port()
    verifier = TokenVerifier(f"http://127.0.0.1:{port}", API, timeout=2)
    for _ in range(3):
        with pytest.raises(KeysUnavailable) as caught:
            verifier.verify(token)
        error = caught.value
        assert isinstance(error, InvalidToken) and error.status_code == 401
        assert error.description == "the token cannot be verified now; try again later"
        shown = error.www_authenticate() + str(error) + repr(error)
        for internal in (str(port), "127.0.0.1", "Errno", "refused", "URLError", "jwks"):
            assert internal not in shown
    assert verifier.jwks_fetches == 1  # with nothing cached, retried after 1 s, not per request
    time.sleep(1.1)
    with pytest.raises(KeysUnavailable):
        verifier.verify(token)
    assert verifier.jwks_fetches == 2


def test_a_dropped_connection_with_nothing_cached_is_invalid_token(idp: Idp, svc: Service) -> None:
    token = idp.token(svc.client_id, svc.key)
    idp.front.failing = True
    with pytest.raises(KeysUnavailable):
        idp.verifier().verify(token)
    idp.front.failing = False
    time.sleep(1.1)
    assert idp.verifier().verify(token)["jti"]


def test_discovery_naming_another_issuer_is_refused(idp: Idp, svc: Service, caplog: pytest.LogCaptureFixture) -> None:
    """OIDC Discovery 1.0 §4.3: the ``issuer`` in the document must equal the URL it was fetched for."""
    token = idp.token(svc.client_id, svc.key)
    with caplog.at_level(logging.WARNING, logger="idp.verify"), pytest.raises(KeysUnavailable):
        TokenVerifier(idp.server.url, API).verify(token)  # the server's discovery says the front is the issuer
    assert any("issuer in the document" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("issuer", ["http://id.example.com", "ftp://127.0.0.1", "file:///etc", "", "id.example.com"])
def test_an_issuer_must_be_https_or_loopback_http(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer must be an https URL"):
        TokenVerifier(issuer, API)


class SlowIssuer:
    """An issuer whose discovery answers at once and whose ``/jwks`` trickles out one byte every ``DRIP`` seconds,
    in the headers (``where="headers"``) or in the body: never silent long enough for a socket timeout to fire."""

    DRIP = 0.05

    def __init__(self, where: str, drips: int) -> None:
        self.stop = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                if where == "headers":
                    self.trickle(b"X-Slow: " + b"a" * drips + b"\r\n")
                self.wfile.write(b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (drips + 12))
                if where == "body":
                    self.trickle(b'{"keys": []}' + b" " * drips)

            def trickle(self, data: bytes) -> None:
                for byte in data:
                    if issuer.stop.wait(SlowIssuer.DRIP):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_an_issuer_trickling_its_jwks_is_cut_off_at_the_timeout(where: str) -> None:
    """``timeout`` bounds the whole answer, not each wait for bytes: 2,000 bytes of headers or body at 20 per
    second would take 100 s; the verifier gives up after about ``timeout`` and answers "try again later"."""
    issuer = SlowIssuer(where, drips=2000)
    try:
        verifier = TokenVerifier(issuer.url, API, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            verifier.verify(stranger({"sub": "x"}))
        assert time.monotonic() - started < 5
    finally:
        issuer.close()


def test_threads_waiting_for_a_stuck_fetch_give_up_after_three_timeouts(idp: Idp, svc: Service) -> None:
    """A fetch can still hang where no deadline reaches (name resolution); here another thread holds the fetch
    for 20 s. A request that needs a key only that fetch can bring answers "try again later" after at most three
    timeouts instead of queueing behind it, and once the fetch is done, verification works again."""
    token = idp.token(svc.client_id, svc.key)
    verifier = idp.verifier(timeout=0.5)
    release = threading.Event()

    def hold_the_fetch() -> None:
        with verifier._lock:
            release.wait(20)

    holder = threading.Thread(target=hold_the_fetch, daemon=True)
    holder.start()
    try:
        while not verifier._lock.locked():
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
        assert 1.4 < time.monotonic() - started < 5
    finally:
        release.set()
        holder.join(TIMEOUT)
    assert verifier.verify(token)["jti"]


@pytest.mark.parametrize("timeout", [None, 0, -1, float("inf"), float("nan"), 301, "5"])
def test_a_timeout_that_cannot_bound_a_fetch_is_refused_at_construction(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        TokenVerifier("https://id.example.com", API, timeout=timeout)
