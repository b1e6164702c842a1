"""What the CLI tests observe: command results, and the whole stored state before and after a command."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import Result

from idp.extensions import db

# SPEC §6: a fixed prefix, a 16-hex-digit public key id and a 256-bit urlsafe secret (43 characters).
API_KEY = re.compile(r"^idp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def ok_json(result: Result) -> Any:
    """The parsed stdout of a command that must have succeeded with ``--json`` and said nothing else."""
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert result.stderr == ""
    return json.loads(result.stdout)


def assert_one_error_line(result: Result) -> None:
    """SPEC §4: a failure exits non-zero with one clear line on stderr, and nothing on stdout."""
    assert result.exit_code != 0
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def table_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (``alembic_version`` included), as stored, in a stable order."""
    with engine.connect() as connection:
        names = sa.inspect(connection).get_table_names()
        return {
            name: sorted(
                (tuple(row) for row in connection.execute(sa.text(f'SELECT * FROM "{name}"'))),  # noqa: S608
                key=repr,
            )
            for name in sorted(names)
        }


def file_digests(directory: str) -> dict[str, str]:
    root = Path(directory)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def stored_state(engine: sa.Engine, settings: dict[str, str]) -> dict[str, Any]:
    """The database and the keyring: everything an idp command may change."""
    return {"tables": table_rows(engine), "keys": file_digests(settings["IDP_KEYS_DIR"])}


def stored_text(engine: sa.Engine) -> list[str]:
    """Every non-null column value of every row, as text, the way a thief with a database dump would read it."""
    return [
        value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for rows in table_rows(engine).values()
        for row in rows
        for value in row
        if value is not None
    ]


def fresh(model: type[Any], key: Any) -> Any:
    """A row as the database holds it now, not as this test's session last saw it."""
    db.session.rollback()
    return db.session.get(model, key)


def run_on_nodes(settings: dict[str, str], *args: str, nodes: int = 3) -> list[subprocess.CompletedProcess[str]]:
    """The same ``idp`` command started at once in ``nodes`` separate processes, as on every node of a cluster."""

    def node(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "idp.cli", *args],
            env={**os.environ, **settings},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with ThreadPoolExecutor(nodes) as pool:
        return list(pool.map(node, range(nodes)))
