"""Keyring verbs: init, rotate, retire, prune, list (SPEC §8).

States move one way: ``next`` → ``active`` → ``retired`` → pruned. The publication invariants:

* a key is in the JWKS at least ``IDP_JWKS_MAX_AGE`` (plus the workers' reload interval) before it signs, so a
  verifier holding a cached JWKS never meets an unknown ``kid`` — ``rotate`` refuses to promote a younger key;
* a retired key stays published until every token it signed has expired — ``prune`` removes only keys retired
  longer ago than the longest token lifetime (plus the reload interval).

``retire`` of the active key is the emergency path (a suspected compromise): it promotes ``next`` at once,
whatever its age, because continuing to sign with a leaked key is worse than a verifier's one refetch.

Every verb reads the clock only after taking the keyring lock: a command that waited for another one must not
stamp a key as retired (or created) earlier than it really was, or ``prune`` and ``rotate`` would act too soon.
``now`` may be passed by tests to stand for that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from idp.extensions import db
from idp.services import audit
from idp.services.keystore import KeyRecord, KeyringError, KeyStore, parse_time

# Workers check the manifest this often; every publication delay includes it.
RELOAD_INTERVAL_SECONDS = 2


@dataclass(frozen=True)
class KeyChange:
    """What a keyring verb did, for the CLI's output and the audit log."""

    action: str
    kids: dict[str, str]


def _now() -> datetime:
    return datetime.now(UTC)


def _by_state(records: list[KeyRecord], state: str) -> list[KeyRecord]:
    return [r for r in records if r.state == state]


def _single(records: list[KeyRecord], state: str) -> KeyRecord | None:
    found = _by_state(records, state)
    if len(found) > 1:
        raise KeyringError(f"keyring has {len(found)} {state} keys; expected at most one")
    return found[0] if found else None


def init_keyring(store: KeyStore, size: int) -> KeyChange | None:
    """Create the first ``active`` and ``next`` keys; do nothing if a keyring exists (idempotent)."""
    with store.locked():
        if store.exists():
            records = store.read_manifest()
            if _single(records, "active") is None:
                raise KeyringError(f"{store.manifest_path} has no active key")
            return None
        now = _now()
        active = store.generate(size, now).with_state("active", now)
        upcoming = store.generate(size, now)
        store.write_manifest([active, upcoming])
        return KeyChange("initialised", {"active": active.kid, "next": upcoming.kid})


def list_keys(store: KeyStore) -> list[KeyRecord]:
    return store.read_manifest()


def rotate(store: KeyStore, size: int, jwks_max_age: int, now: datetime | None = None) -> KeyChange:
    """``next`` → ``active``, ``active`` → ``retired``, fresh ``next`` (SPEC §8).

    Refused while ``next`` has been published for less than ``jwks_max_age`` plus the reload interval: a verifier
    may hold a JWKS cached (RFC 9111 §5.2.2.1 ``max-age``) from before it appeared (RFC 7517 §5)."""
    with store.locked():
        now = now or _now()
        records = store.read_manifest()
        active, upcoming = _single(records, "active"), _single(records, "next")
        if active is None or upcoming is None:
            raise KeyringError("keyring needs an active and a next key to rotate; run `idp init`")
        created = parse_time(upcoming.created_at)
        assert created is not None
        ready_at = created + timedelta(seconds=jwks_max_age + RELOAD_INTERVAL_SECONDS)
        if now < ready_at:
            wait = int((ready_at - now).total_seconds()) + 1
            raise KeyringError(
                f"next key {upcoming.kid} has been published for less than IDP_JWKS_MAX_AGE ({jwks_max_age}s) "
                f"plus the {RELOAD_INTERVAL_SECONDS}s reload interval; verifiers may not have it yet: "
                f"rotate again in {wait}s"
            )
        fresh = store.generate(size, now)
        updated = [r for r in records if r.kid not in (active.kid, upcoming.kid)]
        updated += [active.with_state("retired", now), upcoming.with_state("active", now), fresh]
        store.write_manifest(updated)
        return KeyChange("rotated", {"retired": active.kid, "active": upcoming.kid, "next": fresh.kid})


def retire(store: KeyStore, kid: str, size: int, now: datetime | None = None) -> KeyChange:
    """Stop a key signing now. Retiring the active key promotes ``next`` immediately (emergency rotation);
    retiring ``next`` discards it before it ever signs. Either way a fresh ``next`` is generated.

    The retired key stays published (RFC 7517 §5) until ``prune``, so tokens it signed still verify."""
    with store.locked():
        now = now or _now()
        records = store.read_manifest()
        target = next((r for r in records if r.kid == kid), None)
        if target is None:
            raise KeyringError(f"no key with kid {kid[:80]!r}")
        if target.state == "retired":
            raise KeyringError(f"key {kid} is already retired")
        upcoming = _single(records, "next")
        if target.state == "active" and upcoming is None:
            raise KeyringError("no next key to promote; run `idp keys rotate` instead")
        fresh = store.generate(size, now)
        updated = [r for r in records if r.kid not in (target.kid, upcoming.kid if upcoming else None)]
        updated.append(target.with_state("retired", now))
        if target.state == "active":
            assert upcoming is not None
            updated.append(upcoming.with_state("active", now))
            kids = {"retired": target.kid, "active": upcoming.kid, "next": fresh.kid}
        else:
            kids = {"retired": target.kid, "next": fresh.kid}
        updated.append(fresh)
        store.write_manifest(updated)
        return KeyChange("retired", kids)


def prune(store: KeyStore, max_token_lifetime: int, now: datetime | None = None) -> KeyChange:
    """Unpublish retired keys whose every token has expired, and delete leftovers of interrupted changes.

    A key retired at ``t`` may still sign until workers reload (``t`` + reload interval), and such a token verifies
    until its ``exp`` (RFC 7519 §4.1.4), at most ``max_token_lifetime`` later; only then may it leave the JWKS."""
    horizon = timedelta(seconds=max_token_lifetime + RELOAD_INTERVAL_SECONDS)
    with store.locked():
        now = now or _now()
        records = store.read_manifest()
        expired = [r for r in _by_state(records, "retired") if parse_time(r.retired_at) + horizon <= now]  # type: ignore[operator]
        keep = [r for r in records if r not in expired]
        if expired:
            store.write_manifest(keep)  # unpublish first; a crash now only leaves files to delete later
        for path in store.leftover_files(keep):
            store.remove_file(path)
        return KeyChange("pruned", {r.kid: "pruned" for r in expired})


_EVENTS = {"initialised": "key.created", "rotated": "key.rotated", "retired": "key.retired", "pruned": "key.pruned"}


def record_change(change: KeyChange, actor: str) -> None:
    """Audit a keyring change (``key.created``, ``key.rotated``, ``key.retired``, ``key.pruned``; SPEC §10).

    The verbs above work on files and need no app; this needs the database, and the keyring is the truth: a
    database that is not there yet (``idp init`` before its schema) only costs the row, never the change."""
    details: dict[str, Any] = {"kids": sorted(change.kids)} if change.action == "pruned" else dict(change.kids)
    try:
        audit.record(_EVENTS[change.action], actor=actor, commit=True, **details)
    except SQLAlchemyError:
        db.session.rollback()
