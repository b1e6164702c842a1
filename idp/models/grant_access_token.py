"""The access-token `jti`s issued under a grant, so revoking the grant can deny them (SPEC §7)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime


class GrantAccessToken(Base):
    __tablename__ = "grant_access_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(sa.ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    # Indexed for `idp db prune`, which deletes the records of expired access tokens.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
