"""Server-side login sessions; `id` is the OIDC `sid` (SPEC §10, OIDC Front-Channel Logout §3)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, utcnow


class LoginSession(Base):
    __tablename__ = "login_sessions"

    # Public session id, put in ID tokens as `sid`.
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # SHA-256 of the secret cookie value; the cookie itself is never stored.
    cookie_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Indexed for `idp db prune`, which deletes ended sessions as well as expired ones.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
