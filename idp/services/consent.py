"""Remembered consent per (user, client): a request is covered when every scope it asks for was granted
before (OIDC Core §3.1.2.4)."""

from __future__ import annotations

from sqlalchemy import select

from idp.extensions import db
from idp.models import Consent
from idp.services import audit


def has_consent(user_id: str, client_id: str, scopes: list[str]) -> bool:
    granted = db.session.scalar(
        select(Consent.scopes).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    return granted is not None and set(scopes) <= set(granted)


def grant_consent(user_id: str, client_id: str, scopes: list[str], ip: str | None, request_id: str | None) -> None:
    row = db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
    if row is None:
        db.session.add(Consent(user_id=user_id, client_id=client_id, scopes=sorted(set(scopes))))
    else:
        row.scopes = sorted(set(row.scopes) | set(scopes))
    audit.record(
        "consent.granted", actor=user_id, client_id=client_id, ip=ip, request_id=request_id, scope=" ".join(scopes)
    )
    db.session.commit()


def deny_consent(user_id: str, client_id: str, scopes: list[str], ip: str | None, request_id: str | None) -> None:
    audit.record(
        "consent.denied",
        actor=user_id,
        client_id=client_id,
        ip=ip,
        request_id=request_id,
        scope=" ".join(scopes),
        commit=True,
    )
