"""Bare extension instances, bound to the app in :func:`idp.create_app` (avoids import cycles)."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from idp.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
# Every limit names its own key function (idp/services/limits.py); the default is the client IP, which is
# ``request.remote_addr`` after ProxyFix has applied IDP_TRUSTED_PROXIES.
limiter = Limiter(key_func=get_remote_address)
