"""Refresh tokens: opaque, digest only, one family per grant, rotated on every use (SPEC §7, RFC 9700 §4.14)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, utcnow


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    # For `idp db prune`, which deletes a family's current (not rotated) token once it is idle-expired. Rotated
    # tokens outnumber current ones and are kept until their grant ends: `rotated_at IS NULL` leads the index,
    # so the range scan never visits them.
    __table_args__ = (sa.Index("ix_refresh_tokens_rotated_at_idle_expires_at", "rotated_at", "idle_expires_at"),)

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(sa.ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(sa.String(64))
    scope: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by the one conditional UPDATE that rotates it; a second presentation is reuse.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Indexed for `idp db prune`, which deletes tokens revoked long enough ago.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
