"""A grant: what one authorization gave one client for one user; the refresh-token family id (SPEC §7)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, utcnow


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(sa.String(64))
    scope: Mapped[str] = mapped_column(sa.Text)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Absolute end of the family: no refresh token of this grant outlives it. Indexed for `idp db prune`.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
