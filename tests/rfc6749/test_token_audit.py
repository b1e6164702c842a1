"""Audit trail of the service-token path (SPEC §10): ``subject.verb`` rows and log lines with identifiers only,
never an API key secret or a whole token."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.extensions import db
from idp.logging_setup import JsonFormatter, TextFormatter
from idp.models import AuditEvent
from idp.services.api_keys import create_api_key, prefix_of, revoke_api_key
from idp.services.background import writer
from tests.oauth_support import CC, basic, issue, service, verify


@pytest.fixture
def idp_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(logging.getLogger("idp"), "propagate", True)  # let caplog see idp's records
    caplog.set_level(logging.INFO, logger="idp")
    return caplog


def test_issuing_failing_and_revoking_are_audited_without_secrets(
    app: Flask, client: FlaskClient, idp_logs: pytest.LogCaptureFixture
) -> None:
    svc = service()
    spare = create_api_key(svc.client_id, "spare")
    token = issue(client, svc)
    jti = verify(client, token, "https://api.example.com", app.config["IDP_ISSUER"])["jti"]
    wrong_secret = spare.key[:-43] + "A" * 43
    assert client.post("/token", data=CC, headers=basic(svc.client_id, wrong_secret)).status_code == 401
    swapped = basic(spare.key, svc.client_id)  # a classic mistake: key and id exchanged
    assert client.post("/token", data=CC, headers=swapped).status_code == 401
    assert client.post("/revoke", data={"token": token}, headers=basic(svc.client_id, svc.key)).status_code == 200
    revoke_api_key(spare.row.id)
    writer(app).flush()

    rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    by_event: dict[str, list[AuditEvent]] = {}
    for row in rows:
        by_event.setdefault(row.event, []).append(row)
    assert {"api_key.created", "token.issued", "client.auth_failed", "token.revoked", "api_key.revoked"} <= set(
        by_event
    )
    assert [r.details["jti"] for r in by_event["token.issued"]] == [jti]
    assert by_event["token.issued"][0].client_id == svc.client_id
    assert [r.details["jti"] for r in by_event["token.revoked"]] == [jti]
    assert {r.details["key_id"] for r in by_event["api_key.created"]} == {svc.key_id, spare.row.id}
    assert [r.details["prefix"] for r in by_event["api_key.revoked"]] == [prefix_of(spare.row.id)]
    failed = by_event["client.auth_failed"]
    assert [r.client_id for r in failed] == [svc.client_id, prefix_of(spare.row.id) + "_..."]
    assert all(r.details["method"] == "client_secret_basic" and r.details["endpoint"] == "/token" for r in failed)

    recorded = json.dumps([[r.event, r.actor, r.client_id, r.ip, r.request_id, r.details] for r in rows], default=str)
    logged = "\n".join(
        formatter.format(record) for record in idp_logs.records for formatter in (JsonFormatter(), TextFormatter())
    )
    assert "token.issued" in logged and "client.auth_failed" in logged
    for secret in (svc.key, spare.key, wrong_secret, token):
        for text in (recorded, logged):
            assert secret not in text
            # Not even the secret half of a key (idp_<key id>_<secret>; the secret itself may hold "_"), nor a
            # token's signature.
            part = secret.rsplit(".", 1)[-1] if secret == token else secret.split("_", 2)[2]
            assert part not in text


@pytest.mark.parametrize(
    "wrap", ["{} ", "{}\r\n", '"{}"', " {}", "{},"], ids=["space", "crlf", "quotes", "leading", "comma"]
)
def test_an_api_key_sent_as_the_client_id_is_audited_by_its_prefix_whatever_surrounds_it(
    app: Flask, client: FlaskClient, idp_logs: pytest.LogCaptureFixture, wrap: str
) -> None:
    svc = service()
    claimed = wrap.format(svc.key)
    response = client.post("/token", data={**CC, "client_id": claimed, "client_secret": svc.client_id})
    assert response.status_code == 401
    writer(app).flush()
    row = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "client.auth_failed")).one()
    assert row.client_id == prefix_of(svc.key_id) + "_..."
    secret_half = svc.key.split("_", 2)[2]
    recorded = json.dumps([row.client_id, row.details])
    assert secret_half[:16] not in recorded
    assert secret_half[:16] not in "\n".join(JsonFormatter().format(r) for r in idp_logs.records)


def test_an_unregistered_client_id_is_audited_only_as_a_keyed_digest(
    app: Flask, client: FlaskClient, idp_logs: pytest.LogCaptureFixture
) -> None:
    pasted = "correct horse battery staple"  # could be anybody's secret
    response = client.post("/token", data={**CC, "client_id": pasted, "client_secret": "x"})
    assert response.status_code == 401
    writer(app).flush()
    row = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "client.auth_failed")).one()
    assert row.client_id is None
    assert len(row.details["claimed_id_hmac"]) == 16
    assert pasted not in json.dumps([row.client_id, row.details])
    assert pasted not in "\n".join(JsonFormatter().format(r) for r in idp_logs.records)
