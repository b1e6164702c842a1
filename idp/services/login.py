"""Password authentication (SPEC §10): argon2id with rehash on login, and the same work and the same answer
for an unknown user as for a wrong password."""

from __future__ import annotations

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from idp.services.errors import Invalid
from idp.services.users import MAX_PASSWORD, normalize_username, password_hasher

# A real hash of a random password, so unknown usernames cost one full argon2 verification too.
_DUMMY_HASH = password_hasher.hash("idp-dummy-password-for-timing-equalisation")


def authenticate_user(username: str, password: str) -> User | None:
    """The user if the password is right and the account enabled; ``None`` otherwise, after equal work."""
    try:
        name = normalize_username(username)
    except Invalid:
        name = None
    user = db.session.scalar(select(User).where(User.username == name)) if name else None
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        ok = len(password) <= MAX_PASSWORD and password_hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.password_hash is None or user.disabled:
        return None
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    return user
