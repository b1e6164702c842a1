"""Bare extension instances, bound to the app in :func:`idp.create_app` (avoids import cycles)."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from idp.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
