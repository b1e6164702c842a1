"""``/metrics`` (SPEC §5, issue 7): Prometheus exposition of requests, latency, tokens, security events, rate-limit
refusals and signing-key ages; summed over worker processes under ``idp serve``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from idp import create_app
from idp.services.background import writer
from idp.services.keyring import Keyring
from tests.conftest import LiveServer
from tests.oauth_support import CC, basic, service


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def test_token_requests_are_counted_with_their_route_status_and_latency(app: Flask, client: FlaskClient) -> None:
    svc = service()
    before = scrape(client)
    for _ in range(3):
        assert client.post("/token", data=CC, headers=basic(svc.client_id, svc.key)).status_code == 200
    client.post("/token", data=CC, headers=basic(svc.client_id, "idp_0123456789abcdef_" + "A" * 43))
    after = scrape(client)
    ok = {"endpoint": "/token", "method": "POST", "status": "200"}
    refused = {**ok, "status": "401"}
    assert value(after, "idp_http_requests_total", **ok) - value(before, "idp_http_requests_total", **ok) == 3
    assert value(after, "idp_http_requests_total", **refused) - value(before, "idp_http_requests_total", **refused) == 1
    count = "idp_http_request_duration_seconds_count"
    assert value(after, count, endpoint="/token") - value(before, count, endpoint="/token") == 4


def test_tokens_auth_failures_and_rate_limit_refusals_are_counted(settings: dict[str, str]) -> None:
    application = create_app({**settings, "IDP_RATE_LIMIT_CLIENT_AUTH": "2 per minute"})
    client = application.test_client()
    with application.app_context():
        svc = service()
    before = scrape(client)
    assert client.post("/token", data=CC, headers=basic(svc.client_id, svc.key)).status_code == 200
    wrong = basic(svc.client_id, "idp_0123456789abcdef_" + "A" * 43)
    statuses = [client.post("/token", data=CC, headers=wrong).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    writer(application).flush()  # hot-path events are counted when the background writer flushes them
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("idp_tokens_issued_total", grant_type="client_credentials") == 1
    assert delta("idp_security_events_total", event="token.issued") == 1
    assert delta("idp_security_events_total", event="client.auth_failed") == 2  # the throttled one is not audited
    assert delta("idp_rate_limited_total", limit="client-auth") == 1


def test_unknown_paths_and_methods_do_not_become_labels(client: FlaskClient) -> None:
    client.open("/no/such/path-" + "x" * 40, method="BREW")
    text = scrape(client)
    assert "no/such" not in text
    assert "BREW" not in text
    others = [
        count
        for (name, labels), count in samples(text).items()
        if name == "idp_http_requests_total" and {("endpoint", "other"), ("method", "other")} <= labels
    ]
    assert sum(others) >= 1


def test_signing_key_ages_are_published_per_kid(app: Flask, client: FlaskClient) -> None:
    keyring: Keyring = app.extensions["idp.keyring"]
    view = keyring.current()
    text = scrape(client)
    for record in view.records:
        age = value(text, "idp_signing_key_age_seconds", kid=record.kid, state=record.state)
        assert 0 <= age < 3600, record


def test_metrics_hold_no_secret_or_token(client: FlaskClient) -> None:
    svc = service()
    token = client.post("/token", data=CC, headers=basic(svc.client_id, svc.key)).get_json()["access_token"]
    text = scrape(client)
    assert svc.key not in text
    assert token.split(".")[2] not in text


def test_live_server_sums_every_worker(app: Flask, settings: dict[str, str], tmp_path: Path) -> None:
    """Two worker processes: each writes its own samples, and one scrape adds them all up."""
    samples_dir = tmp_path / "metrics"
    server = LiveServer({**settings, "PROMETHEUS_MULTIPROC_DIR": str(samples_dir)}, workers=2)
    try:
        svc = service()
        sent, deadline = 0, time.monotonic() + 30
        # A new connection each time; which worker accepts it is the kernel's choice, so go on until both have
        # answered (each worker's first sample creates its own file).
        while sent < 60 or len(list(samples_dir.glob("counter_*.db"))) < 2:
            assert time.monotonic() < deadline, "one worker answered every request"
            response = requests.post(f"{server.url}/token", data=CC, headers=basic(svc.client_id, svc.key), timeout=10)
            assert response.status_code == 200
            sent += 1
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        ok = value(text, "idp_http_requests_total", endpoint="/token", method="POST", status="200")
        assert ok == sent, re.findall(r"idp_http_requests_total.*", text)
        assert len(list(samples_dir.glob("counter_*.db"))) == 2  # one file per worker process
    finally:
        server.stop()
