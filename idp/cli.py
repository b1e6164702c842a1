"""The ``idp`` command (SPEC §4). Each command is a thin click wrapper over a service call.

Every command accepts ``--json``, exits 0 on success and, on failure, prints one line ``error: ...`` on stderr
and exits non-zero without having changed anything.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from idp.config import ConfigError, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
    else:
        click.echo(text() if callable(text) else text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def actor() -> str:
    """Who the audit trail names for a command: ``cli:<os user>`` (``cli`` when the account has no name)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:255]
    except (KeyError, OSError):
        return "cli"


@contextmanager
def app_context() -> Iterator[Flask]:
    """A configured app with its context pushed; configuration errors become one line and exit code 2."""
    from idp import create_app

    try:
        app = create_app()
    except ConfigError as exc:
        fail(str(exc), code=2)
    with app.app_context():
        yield app


def guarded(func_: F) -> F:
    """Turn the domain's refusals into one line on stderr and a non-zero exit, with the transaction undone."""
    from idp.services.errors import ServiceError
    from idp.services.keystore import KeyringError

    @functools.wraps(func_)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func_(*args, **kwargs)
        except (ServiceError, KeyringError) as exc:
            _rollback()
            fail(str(exc))
        except SQLAlchemyError as exc:
            _rollback()
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            fail(f"database: {reason} (is the schema current? run `idp init`)")

    return wrapper  # type: ignore[return-value]


def _rollback() -> None:
    from flask import has_app_context

    from idp.extensions import db

    if has_app_context():
        db.session.rollback()


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")

# Client and user ids and kids are random URL-safe base64, one in 64 starting with "-", and Alembic revisions may
# be relative ("-1"): commands taking one read such an argument as the argument, not as an unknown option.
DASHED_ARGUMENT = {"ignore_unknown_options": True}


@click.group()
@click.version_option(package_name="idp")
def main() -> None:
    """idp: OAuth 2.0 authorization server and OpenID Connect provider."""


# --- init / serve / db -----------------------------------------------------------------------------------


def _ensure_secret_key(instance_dir: str) -> bool:
    from idp.app_setup import SECRET_KEY_FILE
    from idp.services.keystore import atomic_write

    path = Path(instance_dir) / SECRET_KEY_FILE
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, secrets.token_urlsafe(48).encode() + b"\n", mode=0o600)
    return True


@main.command()
@json_option
@guarded
def init(as_json: bool) -> None:
    """Create or upgrade the schema, the secret key and the first signing keys. Safe to run again."""
    from idp.services.keys import init_keyring, record_change
    from idp.services.keystore import KeyStore

    with app_context() as app:
        created_secret = not app.config["IDP_SECRET_KEY"] and _ensure_secret_key(app.config["IDP_INSTANCE_DIR"])
        _alembic("upgrade", "head")
        change = init_keyring(KeyStore(app.config["IDP_KEYS_DIR"]), app.config["IDP_SIGNING_KEY_SIZE"])
        if change:
            record_change(change, actor())
        result = {
            "schema": "current",
            "secret_key_created": created_secret,
            "keys_created": change.kids if change else {},
        }
        emit(
            as_json,
            result,
            lambda: (
                "idp initialised: schema current"
                + (", secret key generated" if created_secret else "")
                + (f", keys created (active {change.kids['active']})" if change else ", keys present")
            ),
        )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="Worker processes (default: cores).")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="One line per request.")
@json_option
def serve(host: str, port: int, workers: int | None, threads: int, access_log: bool, as_json: bool) -> None:
    """Run the production WSGI server (granian; see README "Choosing the WSGI server" for the figures)."""
    from idp.services.keystore import KeyringError

    with app_context() as app:
        if not app.config["IDP_SECRET_KEY_PERSISTENT"]:
            fail("no IDP_SECRET_KEY and no instance/secret_key: run `idp init` first")
        try:
            app.extensions["idp.keyring"].load()
        except KeyringError as exc:
            fail(str(exc))
    argv = [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1",
        "--host", host, "--port", str(port),
        "--workers", str(workers or os.cpu_count() or 1),
        # Bounded per-worker concurrency, in line with the database connection pool.
        "--blocking-threads", str(threads),
        "--respawn-failed-workers", "--workers-kill-timeout", "10", "--log-level", "warning",
        "--access-log" if access_log else "--no-access-log",
        "--factory", "idp:create_server_app",
    ]  # fmt: skip
    prepare_metrics_dir()
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with the server


def prepare_metrics_dir() -> None:
    """Workers share their Prometheus samples through files in ``PROMETHEUS_MULTIPROC_DIR`` (idp/metrics.py):
    an operator's directory is emptied of a previous run's samples, else a fresh one is made."""
    from idp.metrics import MULTIPROCESS_ENV

    directory = os.environ.get(MULTIPROCESS_ENV) or tempfile.mkdtemp(prefix="idp-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_ENV] = directory


@main.group()
def db() -> None:
    """Schema migrations (Alembic, in migrations/) and housekeeping."""


@db.command("upgrade")
@click.argument("revision", default="head")
@json_option
@guarded
def db_upgrade(revision: str, as_json: bool) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    with app_context():
        _alembic("upgrade", revision)
        emit(as_json, {"revision": _current_revision()}, lambda: f"schema at {_current_revision()}")


@db.command("downgrade", context_settings=DASHED_ARGUMENT)
@click.argument("revision")
@json_option
@guarded
def db_downgrade(revision: str, as_json: bool) -> None:
    """Downgrade the schema to REVISION."""
    with app_context():
        _check_revision(revision)
        _alembic("downgrade", revision)
        emit(as_json, {"revision": _current_revision()}, lambda: f"schema at {_current_revision()}")


@db.command("current")
@json_option
@guarded
def db_current(as_json: bool) -> None:
    """Print the schema revision of the database."""
    with app_context():
        revision = _current_revision()
        emit(as_json, {"revision": revision}, revision or "(empty database)")


@db.command("prune")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100000))
@json_option
@guarded
def db_prune(batch_size: int, as_json: bool) -> None:
    """Delete expired codes, tokens, grants, sessions, denylist entries and old audit events, in batches (safe to
    run on every node at once, e.g. hourly)."""
    from idp.services.housekeeping import prune

    with app_context():
        pruned = prune(actor=actor(), batch_size=batch_size)
        width = max(map(len, pruned.deleted))
        emit(
            as_json,
            {"deleted": pruned.deleted, "total": pruned.total},
            "\n".join([f"{table:<{width}}  {count}" for table, count in pruned.deleted.items()])
            + f"\ndeleted {pruned.total} row(s)",
        )


def _alembic(verb: str, revision: str) -> None:
    """Run Alembic's upgrade or downgrade. Called directly, not through Flask-Migrate, whose wrappers log a
    refusal in their own format and exit, where ours is one ``error:`` line."""
    from alembic import command
    from alembic.util import CommandError
    from flask import current_app

    from idp.services.errors import Invalid

    config = current_app.extensions["migrate"].migrate.get_config()
    try:
        getattr(command, verb)(config, revision)
    except CommandError as exc:
        raise Invalid((str(exc).splitlines() or ["migration refused"])[0]) from None


def _check_revision(revision: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from flask import current_app

    from idp.services.errors import NotFound

    config = current_app.extensions["migrate"].migrate.get_config()
    try:
        if revision != "base" and not revision.startswith(("-", "+")):
            ScriptDirectory.from_config(config).get_revision(revision)
    except CommandError as exc:
        raise NotFound(f"unknown revision {revision!r}") from exc


def _current_revision() -> str | None:
    from alembic.runtime.migration import MigrationContext

    from idp.extensions import db as database

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# --- keys ------------------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Signing keys: list, rotate, retire, prune (SPEC §8)."""


def _key_dict(record: Any) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "state": record.state,
        "created_at": record.created_at,
        "activated_at": record.activated_at,
        "retired_at": record.retired_at,
    }


@keys.command("list")
@json_option
@guarded
def keys_list(as_json: bool) -> None:
    """List keys with their states."""
    from idp.services.keys import list_keys
    from idp.services.keystore import KeyStore

    with app_context() as app:
        records = [_key_dict(r) for r in list_keys(KeyStore(app.config["IDP_KEYS_DIR"]))]
        emit(
            as_json,
            records,
            lambda: "\n".join(f"{r['kid']}  {r['state']:<8} created {r['created_at']}" for r in records),
        )


@keys.command("rotate")
@json_option
@guarded
def keys_rotate(as_json: bool) -> None:
    """next → active, active → retired, and a fresh next key."""
    from idp.services.keys import record_change, rotate
    from idp.services.keystore import KeyStore

    with app_context() as app:
        change = rotate(
            KeyStore(app.config["IDP_KEYS_DIR"]), app.config["IDP_SIGNING_KEY_SIZE"], app.config["IDP_JWKS_MAX_AGE"]
        )
        record_change(change, actor())
        emit(as_json, change.kids, f"rotated: active {change.kids['active']}, next {change.kids['next']}")


@keys.command("retire", context_settings=DASHED_ARGUMENT)
@click.argument("kid")
@json_option
@guarded
def keys_retire(kid: str, as_json: bool) -> None:
    """Stop KID signing now (emergency: retiring the active key promotes next at once)."""
    from idp.services.keys import record_change, retire
    from idp.services.keystore import KeyStore

    with app_context() as app:
        change = retire(KeyStore(app.config["IDP_KEYS_DIR"]), kid, app.config["IDP_SIGNING_KEY_SIZE"])
        record_change(change, actor())
        emit(as_json, change.kids, f"retired {kid}")


@keys.command("prune")
@json_option
@guarded
def keys_prune(as_json: bool) -> None:
    """Remove retired keys whose every token has expired."""
    from idp.extensions import db as database
    from idp.models import Client
    from idp.services.keys import prune, record_change
    from idp.services.keystore import KeyStore

    with app_context() as app:
        lifetime = max(app.config["IDP_ACCESS_TOKEN_TTL"], app.config["IDP_ID_TOKEN_TTL"])
        longest_override = database.session.scalar(select(func.max(Client.access_token_ttl)))
        lifetime = max(lifetime, longest_override or 0)
        change = prune(KeyStore(app.config["IDP_KEYS_DIR"]), lifetime)
        pruned = sorted(change.kids)
        if pruned:
            record_change(change, actor())
        emit(as_json, {"pruned": pruned}, f"pruned {len(pruned)} key(s)" + (": " + ", ".join(pruned) if pruned else ""))


# --- clients ---------------------------------------------------------------------------------------------


def _client_options(creating: bool) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        options = [
            click.option("--name", required=creating),
            click.option("--public/--confidential", "public", default=None),
            click.option("--grant-type", "grant_types", multiple=True),
            click.option("--redirect-uri", "redirect_uris", multiple=True),
            click.option("--post-logout-redirect-uri", "logout_uris", multiple=True),
            click.option("--scope"),
            click.option("--audience", "audiences", multiple=True),
            click.option("--skip-consent/--no-skip-consent", default=None),
            click.option("--require-nonce/--no-require-nonce", default=None),
            click.option("--token-endpoint-auth-method"),
            click.option("--jwks-uri"),
            click.option("--jwks-file"),
            click.option("--access-token-ttl", type=click.IntRange(1, None)),
            click.option("--logo-uri", help="Logo shown on the consent page (https); '' removes it."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _client_spec(kw: dict[str, Any]) -> Any:
    from idp.services.clients import ClientSpec

    return ClientSpec(
        name=kw["name"],
        public=kw["public"],
        grant_types=list(kw["grant_types"]) or None,
        redirect_uris=list(kw["redirect_uris"]) or None,
        post_logout_redirect_uris=list(kw["logout_uris"]) or None,
        scope=kw["scope"],
        audiences=list(kw["audiences"]) or None,
        skip_consent=kw["skip_consent"],
        require_nonce=kw["require_nonce"],
        token_endpoint_auth_method=kw["token_endpoint_auth_method"],
        jwks_uri=kw["jwks_uri"],
        jwks_file=kw["jwks_file"],
        access_token_ttl=kw["access_token_ttl"],
        logo_uri=kw["logo_uri"],
    )


@main.group()
def clients() -> None:
    """OAuth clients."""


@clients.command("create")
@_client_options(creating=True)
@json_option
@guarded
def clients_create(as_json: bool, **kw: Any) -> None:
    """Register a client. A confidential client's first API key is printed once."""
    from idp.services.clients import client_as_dict, create_client

    with app_context():
        client, key = create_client(_client_spec(kw), actor())
        data = client_as_dict(client)
        if key:
            data.update(client_secret=key.key, api_key_id=key.row.id)
        lines = [f"client_id: {client.id}"]
        if key:
            lines += [
                f"client_secret: {key.key}",
                f"api_key_id: {key.row.id}",
                "(the secret is shown once; store it now)",
            ]
        emit(as_json, data, "\n".join(lines))


@clients.command("list")
@json_option
@guarded
def clients_list(as_json: bool) -> None:
    """List clients."""
    from idp.services.clients import client_as_dict, list_clients

    with app_context():
        rows = [client_as_dict(c) for c in list_clients()]
        emit(
            as_json,
            rows,
            lambda: "\n".join(f"{r['client_id']}  {r['name']}  {' '.join(r['grant_types'])}" for r in rows),
        )


@clients.command("show", context_settings=DASHED_ARGUMENT)
@click.argument("client_id")
@json_option
@guarded
def clients_show(client_id: str, as_json: bool) -> None:
    """Show one client."""
    from idp.services.clients import client_as_dict, get_client

    with app_context():
        data = client_as_dict(get_client(client_id))
        emit(as_json, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items()))


@clients.command("update", context_settings=DASHED_ARGUMENT)
@click.argument("client_id")
@_client_options(creating=False)
@json_option
@guarded
def clients_update(client_id: str, as_json: bool, **kw: Any) -> None:
    """Change a client's registration; options not given stay as they are."""
    from idp.services.clients import client_as_dict, update_client

    with app_context():
        data = client_as_dict(update_client(client_id, _client_spec(kw), actor()))
        emit(as_json, data, f"updated {client_id}")


@clients.command("delete", context_settings=DASHED_ARGUMENT)
@click.argument("client_id")
@json_option
@guarded
def clients_delete(client_id: str, as_json: bool) -> None:
    """Delete a client with its keys, codes and grants."""
    from idp.services.clients import delete_client

    with app_context():
        delete_client(client_id, actor())
        emit(as_json, {"client_id": client_id, "deleted": True}, f"deleted {client_id}")


# --- api-keys --------------------------------------------------------------------------------------------


@main.group("api-keys")
def api_keys() -> None:
    """Per-client API keys (used as the client secret)."""


def _api_key_dict(row: Any) -> dict[str, Any]:
    from idp.services.api_keys import prefix_of

    return {
        "id": row.id,
        "client_id": row.client_id,
        "name": row.name,
        "prefix": prefix_of(row.id),
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "last_used_at": _iso(row.last_used_at),
        "revoked_at": _iso(row.revoked_at),
    }


# A century: beyond any useful lifetime or look-back, and well inside the range of a datetime.
MAX_DURATION = 36500 * 86400


def _duration(_ctx: Any, _param: Any, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds == 0:
        raise click.BadParameter("must be greater than zero")
    if seconds > MAX_DURATION:
        raise click.BadParameter("must be at most 36500d")
    return seconds


@api_keys.command("create", context_settings=DASHED_ARGUMENT)
@click.argument("client_id")
@click.option("--name")
@click.option("--expires-in", callback=_duration, help="Lifetime, e.g. 90d (default: no expiry).")
@json_option
@guarded
def api_keys_create(client_id: str, name: str | None, expires_in: int | None, as_json: bool) -> None:
    """Create an API key; the key is printed once."""
    from idp.services.api_keys import create_api_key

    with app_context():
        new = create_api_key(client_id, name, expires_in, actor())
        data = {
            k: v for k, v in _api_key_dict(new.row).items() if k in ("id", "client_id", "name", "prefix", "expires_at")
        }
        data["key"] = new.key
        emit(as_json, data, f"{new.key}\n(id {new.row.id}; the key is shown once; store it now)")


@api_keys.command("list", context_settings=DASHED_ARGUMENT)
@click.argument("client_id")
@json_option
@guarded
def api_keys_list(client_id: str, as_json: bool) -> None:
    """List a client's API keys (never the secrets)."""
    from idp.services.api_keys import list_api_keys

    with app_context():
        rows = [_api_key_dict(r) for r in list_api_keys(client_id)]
        for row in rows:
            del row["client_id"]
        emit(
            as_json,
            rows,
            lambda: "\n".join(
                f"{r['id']}  {r['prefix']}  {r['name']}  "
                + ("revoked" if r["revoked_at"] else f"expires {r['expires_at'] or 'never'}")
                for r in rows
            ),
        )


@api_keys.command("revoke")
@click.argument("key_id")
@json_option
@guarded
def api_keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke one API key."""
    from idp.services.api_keys import revoke_api_key

    with app_context():
        row = revoke_api_key(key_id, actor())
        emit(as_json, _api_key_dict(row), f"revoked {key_id}")


# --- users -----------------------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """End users."""


def _user_dict(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "name": user.name,
        "disabled": user.disabled,
        "created_at": _iso(user.created_at),
    }


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        # The line ending is not part of the password, whichever platform wrote it.
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


@users.command("create")
@click.option("--username", required=True)
@click.option("--email")
@click.option("--name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@json_option
@guarded
def users_create(username: str, email: str | None, name: str | None, password_stdin: bool, as_json: bool) -> None:
    """Create a user (password hashed with argon2id)."""
    from idp.services.users import create_user

    password = _read_password(password_stdin)
    with app_context():
        user = create_user(username, password, email, name, actor())
        emit(
            as_json,
            {"id": user.id, "username": user.username, "email": user.email},
            f"created user {user.username} ({user.id})",
        )


@users.command("list")
@json_option
@guarded
def users_list(as_json: bool) -> None:
    """List users."""
    from idp.services.users import list_users

    with app_context():
        rows = [_user_dict(u) for u in list_users()]
        emit(
            as_json,
            rows,
            lambda: "\n".join(f"{r['id']}  {r['username']}" + ("  (disabled)" if r["disabled"] else "") for r in rows),
        )


@users.command("show", context_settings=DASHED_ARGUMENT)
@click.argument("user")
@json_option
@guarded
def users_show(user: str, as_json: bool) -> None:
    """Show a user by id or username."""
    from idp.services.users import get_user

    with app_context():
        data = _user_dict(get_user(user))
        emit(as_json, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items()))


def _user_action(name: str, help_text: str, action: Callable[[str], Any]) -> None:
    @users.command(name, help=help_text, context_settings=DASHED_ARGUMENT)
    @click.argument("user")
    @json_option
    @guarded
    def command(user: str, as_json: bool) -> None:
        with app_context():
            result = action(user)
            emit(
                as_json,
                _user_dict(result) if result is not None else {"user": user, "deleted": True},
                f"{name}: {user}",
            )


def _disable(user: str) -> Any:
    from idp.services.users import set_disabled

    return set_disabled(user, True, actor())


def _enable(user: str) -> Any:
    from idp.services.users import set_disabled

    return set_disabled(user, False, actor())


def _delete(user: str) -> None:
    from idp.services.users import delete_user

    delete_user(user, actor())


_user_action("disable", "Stop a user signing in.", _disable)
_user_action("enable", "Let a disabled user sign in again.", _enable)
_user_action("delete", "Delete a user with their sessions, grants and consents.", _delete)


@users.command("set-password", context_settings=DASHED_ARGUMENT)
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@json_option
@guarded
def users_set_password(user: str, password_stdin: bool, as_json: bool) -> None:
    """Set a user's password."""
    from idp.services.errors import Invalid
    from idp.services.users import set_password

    password = _read_password(password_stdin)
    if password is None:
        raise Invalid("no password given (use --password-stdin)")
    with app_context():
        emit(as_json, _user_dict(set_password(user, password, actor())), f"password set for {user}")


# --- audit -----------------------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The audit trail (SPEC §10): security events named subject.verb."""


def _since(ctx: Any, param: Any, value: str | None) -> datetime | None:
    """A look-back (``1h``, ``7d``) or an ISO 8601 time (``2026-11-01T00:00:00Z``)."""
    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"{value[:40]!r} is neither a duration (1h, 7d) nor an ISO 8601 time") from None
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = _duration(ctx, param, value)
    assert seconds is not None
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _audit_dict(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "event": e.event,
        "created_at": _iso(e.created_at),
        "actor": e.actor,
        "client_id": e.client_id,
        "ip": e.ip,
        "request_id": e.request_id,
        "details": e.details,
    }


@audit.command("tail")
@click.option("--since", callback=_since, help="Only events newer than this: 1h, 7d or an ISO 8601 time.")
@click.option("--event", "event_name", help="Only this event name, e.g. api_key.revoked.")
@click.option("--actor", "actor_name", help="Only events by this actor (user id, client id, cli:NAME).")
@click.option("--client", "client_id", help="Only events concerning this client id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@json_option
@guarded
def audit_tail(
    since: datetime | None,
    event_name: str | None,
    actor_name: str | None,
    client_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print the newest audit events, oldest first."""
    from idp.services.audit import AuditQuery, tail

    with app_context():
        query = AuditQuery(since=since, event=event_name, actor=actor_name, client_id=client_id, limit=limit)
        rows = [_audit_dict(e) for e in tail(query)]
        emit(
            as_json,
            rows,
            lambda: "\n".join(
                f"{r['created_at']}  {r['event']:<25} actor={r['actor']} client={r['client_id']} ip={r['ip']} "
                f"{json.dumps(r['details'], sort_keys=True)}"
                for r in rows
            ),
        )


@audit.command("prune")
@click.option(
    "--older-than", callback=_duration, help="Delete events older than this, e.g. 90d (default: IDP_AUDIT_RETENTION)."
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100000))
@json_option
@guarded
def audit_prune(older_than: int | None, batch_size: int, as_json: bool) -> None:
    """Delete audit events past the retention, in batches (safe to run on several nodes at once)."""
    from idp.services.audit import prune

    with app_context():
        pruned = prune(actor=actor(), older_than=older_than, batch_size=batch_size)
        emit(
            as_json,
            {"deleted": pruned.deleted, "before": _iso(pruned.before)},
            f"deleted {pruned.deleted} audit event(s)"
            + (f" older than {_iso(pruned.before)}" if pruned.before else " (IDP_AUDIT_RETENTION=0 keeps every event)"),
        )


if __name__ == "__main__":
    main()
