"""Deleting expired rows in bounded batches: audit events past ``IDP_AUDIT_RETENTION`` (and, through the same
helper, any table whose rows outlive their use, such as spent codes and expired tokens).

Each batch is its own short transaction, so a large backlog never holds a long lock or grows a huge WAL record,
and other writers interleave. On PostgreSQL the batch's rows are picked with ``FOR UPDATE SKIP LOCKED``: several
nodes running the same prune at once split the work instead of queueing on each other's locks, and none fails.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Delete, delete, select, tuple_

from idp.extensions import db

DEFAULT_BATCH_SIZE = 1000


def delete_batch(model: Any, condition: ColumnElement[bool], batch_size: int) -> Delete:
    """The statement deleting one batch: at most ``batch_size`` rows of ``model`` matching ``condition`` that no
    other transaction has locked. A composite primary key is matched as a row value, ``(a, b) IN (SELECT a, b
    ...)``."""
    keys = model.__mapper__.primary_key
    key = keys[0] if len(keys) == 1 else tuple_(*keys)
    batch = select(*keys).where(condition).limit(batch_size).with_for_update(skip_locked=True)
    return delete(model).where(key.in_(batch)).execution_options(synchronize_session=False)


def delete_in_batches(model: Any, condition: ColumnElement[bool], batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete every row of ``model`` matching ``condition``, at most ``batch_size`` per transaction; the number
    deleted by this call (rows another node deleted meanwhile are not counted twice)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    statement = delete_batch(model, condition, batch_size)
    total = 0
    while True:
        result = db.session.execute(statement)
        db.session.commit()
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += deleted
        if deleted < batch_size:  # the rest, if any, is being deleted by another node
            return total
