"""The schema exists only through Alembic migrations, and those migrations agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from idp import create_app
from idp.extensions import db
from tests.conftest import base_settings


def _diff(app):
    with app.app_context():
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
        return diff


def _upgraded_app(settings):
    app = create_app(settings)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return app


def test_migrations_match_models_on_sqlite(tmp_path):
    app = _upgraded_app(base_settings(tmp_path))
    assert _diff(app) == []


def test_migrations_match_models_on_postgresql(tmp_path, pg_url):
    app = _upgraded_app(base_settings(tmp_path, pg_url))
    assert _diff(app) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_downgrade_to_base_and_upgrade_again(tmp_path, request, backend):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    app = _upgraded_app(base_settings(tmp_path, url))
    with app.app_context():
        downgrade(revision="base")
        with db.engine.connect() as connection:
            tables = set(db.inspect(connection).get_table_names())
        assert tables <= {"alembic_version"}
        upgrade()
        db.engine.dispose()
    assert _diff(app) == []


def test_timestamps_come_back_timezone_aware_utc(app):
    from datetime import UTC

    from idp.models import User

    user = User(username="tz-check")
    db.session.add(user)
    db.session.commit()
    db.session.expire_all()
    loaded = db.session.get(User, user.id)
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == UTC.utcoffset(None)


def test_naive_timestamps_are_refused(app):
    from datetime import datetime

    from sqlalchemy.exc import StatementError

    from idp.models import User

    db.session.add(User(username="naive", created_at=datetime(2026, 1, 1)))
    with pytest.raises(StatementError):
        db.session.commit()
    db.session.rollback()
