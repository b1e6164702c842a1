"""End users: RFC 8265 usernames and argon2id passwords (SPEC §10)."""

from __future__ import annotations

import unicodedata

from argon2 import PasswordHasher
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from idp.services import audit
from idp.services.errors import Conflict, Invalid, NotFound

# argon2-cffi's defaults are RFC 9106's low-memory profile (64 MiB, t=3, p=4): above OWASP's minimum.
password_hasher = PasswordHasher()
MAX_PASSWORD = 1024
MAX_EMAIL = 320
MAX_NAME = 255


def normalize_username(raw: str) -> str:
    """RFC 8265 §3.3 UsernameCaseMapped, approximately: NFKC, case-folded, NFKC again; no spaces or controls."""
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    if not name or len(name) > 255:
        raise Invalid("username must be 1-255 characters")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in name):
        raise Invalid("username must not contain spaces or control characters")
    return name


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise Invalid(f"password must be 1-{MAX_PASSWORD} characters")
    return password_hasher.hash(password)


def _validate_email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip()
    local, at, domain = email.rpartition("@")
    # isprintable() refuses controls and every space but " ", which is refused by name.
    if not at or not local or "." not in domain or len(email) > MAX_EMAIL or " " in email or not email.isprintable():
        raise Invalid(f"{email[:80]!r} is not an email address")
    return email


def _validate_name(name: str | None) -> str | None:
    """The display name goes into ID tokens and pages: one printable line that fits the column."""
    if not name:
        return None
    if len(name) > MAX_NAME or not name.isprintable():
        raise Invalid(f"name must be at most {MAX_NAME} printable characters")
    return name


def get_user(ref: str) -> User:
    """A user by id or by username."""
    user = db.session.get(User, ref)
    if user is None:
        try:
            name = normalize_username(ref)
        except Invalid:
            name = None
        user = db.session.scalar(select(User).where(User.username == name)) if name else None
    if user is None:
        raise NotFound(f"no user {ref[:80]!r}")
    return user


def create_user(
    username: str, password: str | None = None, email: str | None = None, name: str | None = None, actor: str = "cli"
) -> User:
    username = normalize_username(username)
    email = _validate_email(email)
    name = _validate_name(name)
    password_hash = hash_password(password) if password is not None else None
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, email=email, name=name, password_hash=password_hash)
    db.session.add(user)
    db.session.flush()
    audit.record("user.created", actor=actor, user_id=user.id)
    db.session.commit()
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.created_at)))


def set_disabled(ref: str, disabled: bool, actor: str = "cli") -> User:
    user = get_user(ref)
    user.disabled = disabled
    audit.record("user.disabled" if disabled else "user.enabled", actor=actor, user_id=user.id)
    db.session.commit()
    return user


def set_password(ref: str, password: str, actor: str = "cli") -> User:
    user = get_user(ref)
    user.password_hash = hash_password(password)
    audit.record("user.password_changed", actor=actor, user_id=user.id)
    db.session.commit()
    return user


def delete_user(ref: str, actor: str = "cli") -> None:
    user = get_user(ref)
    audit.record("user.deleted", actor=actor, user_id=user.id)
    db.session.delete(user)
    db.session.commit()
