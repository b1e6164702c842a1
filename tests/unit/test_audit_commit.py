"""An audit event's log line and metric follow its transaction (SPEC §10): a rolled-back event was never recorded,
so it is neither logged nor counted (a worker killed mid-request, a 503 from a failed commit)."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from idp.extensions import db
from idp.metrics import EVENTS
from idp.services import audit


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(logging.getLogger("idp"), "propagate", True)
    caplog.set_level(logging.INFO, logger="idp.audit")
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "idp.audit"]


def test_a_committed_event_is_logged_and_counted_once(app: Flask, audit_lines: pytest.LogCaptureFixture) -> None:
    before = EVENTS.labels("client.created")._value.get()
    audit.record("client.created", actor="cli:test", client_id="c1")
    assert logged(audit_lines) == []  # not before the commit
    db.session.commit()
    assert logged(audit_lines) == ["client.created"]
    assert EVENTS.labels("client.created")._value.get() - before == 1
    db.session.commit()
    assert logged(audit_lines) == ["client.created"]


def test_a_rolled_back_event_is_neither_logged_nor_counted(app: Flask, audit_lines: pytest.LogCaptureFixture) -> None:
    before = EVENTS.labels("client.deleted")._value.get()
    audit.record("client.deleted", actor="cli:test", client_id="c1")
    db.session.rollback()
    db.session.commit()
    assert logged(audit_lines) == []
    assert EVENTS.labels("client.deleted")._value.get() == before


def test_commit_true_logs_at_once(app: Flask, audit_lines: pytest.LogCaptureFixture) -> None:
    audit.record("user.disabled", actor="cli:test", commit=True)
    assert logged(audit_lines) == ["user.disabled"]
