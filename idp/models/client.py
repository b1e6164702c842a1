"""OAuth clients: web apps (code flow) and services (client credentials) (SPEC §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, utcnow


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    is_public: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # client_secret_basic | client_secret_post | private_key_jwt | none (public clients)
    token_endpoint_auth_method: Mapped[str] = mapped_column(sa.String(40))
    grant_types: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    redirect_uris: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    # The first audience is the default `aud` of access tokens when none is requested (SPEC §7).
    audiences: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    access_token_ttl: Mapped[int | None] = mapped_column(sa.Integer)
    skip_consent: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    require_nonce: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    jwks_uri: Mapped[str | None] = mapped_column(sa.String(2048))
    logo_uri: Mapped[str | None] = mapped_column(sa.String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
