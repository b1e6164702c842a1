"""Password authentication (SPEC §10): argon2id with rehash on login, and the same work and the same answer
for an unknown user as for a wrong password.

A failed attempt is audited as ``login.failed``. The typed username is never recorded: people paste passwords
into the username field. When it names an existing user, the actor is that user's id; otherwise the row carries
only a short keyed digest of it (``username_hmac``, HMAC-SHA-256 with the server's secret key, 64 bits), which
correlates repeated guesses at one name without revealing it, even to someone holding the database.
"""

from __future__ import annotations

import hashlib
import hmac

from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from idp.services import audit
from idp.services.errors import Invalid
from idp.services.users import MAX_PASSWORD, normalize_username, password_hasher

_dummy_hashes: dict[tuple[object, ...], str] = {}


def dummy_hash() -> str:
    """A real hash of a password nobody has, at the hasher's parameters, so an unknown username costs one full
    argon2 verification too (SPEC §10). Made on first use rather than at import, where it cost every ``idp``
    command about 80 ms (a server makes it at start-up: :func:`idp.create_server_app`); kept per parameter set, so
    it always costs what a current user's hash costs."""
    h = password_hasher
    parameters = (h.type, h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len)
    dummy = _dummy_hashes.get(parameters)
    if dummy is None:
        dummy = _dummy_hashes[parameters] = h.hash("idp-dummy-password-for-timing-equalisation")
    return dummy


def authenticate_user(
    username: str, password: str, ip: str | None = None, request_id: str | None = None
) -> User | None:
    """The user if the password is right and the account enabled; ``None`` otherwise, after equal work, with
    the failure audited."""
    try:
        name = normalize_username(username)
    except Invalid:
        name = None
    user = db.session.scalar(select(User).where(User.username == name)) if name else None
    stored = user.password_hash if user is not None and user.password_hash else dummy_hash()
    try:
        ok = len(password) <= MAX_PASSWORD and password_hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.password_hash is None or user.disabled:
        _audit_failure(name or username, user, ok, ip, request_id)
        return None
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    return user


def _audit_failure(typed: str, user: User | None, password_ok: bool, ip: str | None, request_id: str | None) -> None:
    if user is None:
        key = current_app.config["SECRET_KEY"].encode()
        digest = hmac.new(key, b"login.failed username\0" + typed.encode(), hashlib.sha256).hexdigest()[:16]
        audit.record(
            "login.failed",
            actor=None,
            ip=ip,
            request_id=request_id,
            commit=True,
            reason="unknown_username",
            username_hmac=digest,
        )
        return
    reason = "no_password" if user.password_hash is None else "disabled" if password_ok else "wrong_password"
    audit.record("login.failed", actor=user.id, ip=ip, request_id=request_id, commit=True, reason=reason)
