"""Housekeeping (``idp db prune``): delete the rows that have outlived their use, table by table, in bounded
batches that several nodes may run at once (``retention.delete_in_batches``: one short transaction per batch,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so every row is deleted, and counted, by exactly one node).

What "outlived its use" means, per table. Spent credentials are kept while replaying them must still have an
effect: RFC 6749 §4.1.2 and RFC 9700 §4.14.2 ask a replayed code or rotated refresh token to revoke what was
issued with it, and deleting the row would turn that replay into a harmless "unknown token".

- ``authorization_codes``: an unused code once it expires (RFC 6749 §4.1.2, ``IDP_AUTH_CODE_TTL``); a used one
  once the grant it created is past its absolute expiry (or gone), since until then a second redemption revokes
  that grant.
- ``refresh_tokens``: once the grant (the family) is past its absolute expiry; the family's current token once
  it is idle-expired (nothing can use it); a revoked token a day after its revocation (its family is revoked, so
  there is nothing left to protect; for that day a client presenting it is told it was revoked). A rotated
  token of a live grant is kept, so presenting it again still revokes the family.
- ``grant_access_tokens`` (the ``jti``s issued under a grant): once the access token has expired.
- ``grants``: past their absolute expiry by more than a few minutes (a request that read the grant just before
  it expired finishes first) and with no refresh token and no unexpired access token left.
- ``login_sessions``: once expired (``IDP_SESSION_TTL``) or ended by a sign-out or a new sign-in.
- ``revoked_tokens`` (the access-token denylist, RFC 7009 §2.2): once the token's ``exp`` has passed, after
  which no one accepts it anyway (introspection allows no clock leeway).
- ``used_assertions`` (RFC 7523 §3 item 7): once past their stored expiry, which already includes the leeway an
  assertion's ``exp`` is granted.
- ``audit_events``: older than ``IDP_AUDIT_RETENTION`` (``audit.prune``, which records ``audit.pruned``).

Every condition is served by an index (migration ``0002``), so a prune reads the rows it deletes and not the
whole table: refresh tokens are deleted in three passes, one per reason, because an ``OR`` that includes the
anti-join against ``grants`` could only be evaluated row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from idp.models import (
    AuthorizationCode,
    Grant,
    GrantAccessToken,
    LoginSession,
    RefreshToken,
    RevokedToken,
    UsedAssertion,
)
from idp.models.base import utcnow
from idp.services import audit
from idp.services.retention import DEFAULT_BATCH_SIZE, delete_in_batches

# How long a revoked refresh token is kept: nothing depends on it, but a client developer is told "revoked".
REVOKED_REFRESH_TOKEN_KEPT = timedelta(days=1)
# How long past its absolute expiry a grant is kept: longer than any request that read it while it was live
# and may still add a token to it (the insert would otherwise fail on the foreign key).
EXPIRED_GRANT_KEPT = timedelta(minutes=5)


@dataclass(frozen=True)
class Pruned:
    """How many rows :func:`prune` deleted from each table, in the order it visited them."""

    deleted: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _live_grant(grant_id: InstrumentedAttribute[Any], now: datetime) -> ColumnElement[bool]:
    """Whether the grant ``grant_id`` exists and is within its absolute lifetime."""
    return exists().where(Grant.id == grant_id, Grant.expires_at > now)


def _codes(now: datetime) -> ColumnElement[bool]:
    return and_(
        AuthorizationCode.expires_at <= now,
        or_(AuthorizationCode.consumed_at.is_(None), ~_live_grant(AuthorizationCode.grant_id, now)),
    )


def _refresh_tokens(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The family past its absolute expiry (its grant row exists: the foreign key cascades), the current token
    once idle-expired, the revoked token a day on: one pass each."""
    return (
        RefreshToken.grant_id.in_(select(Grant.id).where(Grant.expires_at <= now)),
        and_(RefreshToken.rotated_at.is_(None), RefreshToken.idle_expires_at <= now),
        RefreshToken.revoked_at <= now - REVOKED_REFRESH_TOKEN_KEPT,
    )


def _grants(now: datetime) -> ColumnElement[bool]:
    return and_(
        Grant.expires_at <= now - EXPIRED_GRANT_KEPT,
        ~exists().where(RefreshToken.grant_id == Grant.id),
        ~exists().where(GrantAccessToken.grant_id == Grant.id),
    )


def expired(now: datetime) -> dict[str, tuple[Any, tuple[ColumnElement[bool], ...]]]:
    """Per table, in the order :func:`prune` visits them (dependent rows before their grants): its model and
    the conditions, one deletion pass each, that select its expired rows."""
    return {
        "authorization_codes": (AuthorizationCode, (_codes(now),)),
        "refresh_tokens": (RefreshToken, _refresh_tokens(now)),
        "grant_access_tokens": (GrantAccessToken, (GrantAccessToken.expires_at <= now,)),
        "grants": (Grant, (_grants(now),)),
        "login_sessions": (LoginSession, (or_(LoginSession.expires_at <= now, LoginSession.ended_at.is_not(None)),)),
        "revoked_tokens": (RevokedToken, (RevokedToken.expires_at <= now,)),
        "used_assertions": (UsedAssertion, (UsedAssertion.expires_at <= now,)),
    }


def prune(*, actor: str | None, batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None) -> Pruned:
    """Delete every expired row (see the module docstring), dependent rows before the grants they belong to, and
    audit events past the retention. Recorded as ``db.pruned`` with the counts when anything was deleted."""
    now = now or utcnow()
    deleted = {
        name: sum(delete_in_batches(model, condition, batch_size) for condition in conditions)
        for name, (model, conditions) in expired(now).items()
    }
    deleted["audit_events"] = audit.prune(actor=actor, batch_size=batch_size, now=now).deleted
    pruned = Pruned(deleted)
    if pruned.total:
        details: dict[str, Any] = deleted  # one detail per table, e.g. refresh_tokens=12
        audit.record("db.pruned", actor=actor, commit=True, **details)
    return pruned
