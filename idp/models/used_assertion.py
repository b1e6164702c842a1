"""Client-assertion `jti`s already seen, kept until the assertion's `exp` (RFC 7523 §3 item 7)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime


class UsedAssertion(Base):
    __tablename__ = "used_assertions"

    client_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
