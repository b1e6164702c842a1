"""Every setting of idp, once: name, default, one-line doc and validation (SPEC §3).

Settings come from, in increasing priority: the defaults below, ``instance/idp.toml``, ``.env`` in the working
directory, the process environment (``IDP_*``) and finally the mapping passed to ``create_app(config=...)``.
Everything is validated once, at start-up; a bad value raises :class:`ConfigError` whose message is the one line
the operator sees.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many


class ConfigError(ValueError):
    """A setting has a value idp cannot start with; ``str(error)`` is one clear line."""


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int) -> int:
    """Seconds from ``600``, ``90s``, ``10m``, ``12h`` or ``30d``."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 600, 90s, 10m, 12h, 30d)")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _positive_duration(value: str | int) -> int:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError("must be greater than zero")
    return seconds


def _non_negative_int(value: str | int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (RFC 8252 §7.3, RFC 6761 §6.3)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _issuer(value: str) -> str:
    """OIDC Discovery §3 / RFC 8414 §2: an https URL without query or fragment (http only on loopback)."""
    value = str(value).strip()
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https unless the host is loopback (127.0.0.1, ::1, localhost)")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    value = str(value).strip()
    if "://" not in value:
        raise ValueError(f"{value!r} is not a SQLAlchemy URL")
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        # Relative SQLite paths are relative to the working directory, not Flask's instance folder.
        relative = value[len("sqlite:///") :]
        if relative and relative != ":memory:":
            return "sqlite:///" + str(Path(relative).resolve())
    return value


def _redis_url(value: str) -> str | None:
    value = str(value).strip()
    if not value:
        return None
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{value!r} is not a redis:// URL")
    return value


def _keys_dir(value: str) -> str:
    path = Path(str(value)).resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    if path.exists() and not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f"{path} is not readable")
    return str(path)


def _secret_key(value: str) -> str | None:
    value = str(value)
    if not value:
        return None
    if len(value) < 32:
        raise ValueError("must be at least 32 characters")
    return value


def _pool_size(value: str | int) -> int:
    size = _non_negative_int(value)
    if not 1 <= size <= 100:
        raise ValueError("must be between 1 and 100")
    return size


def _key_size(value: str | int) -> int:
    size = _non_negative_int(value)
    if size not in (2048, 3072, 4096):
        raise ValueError("must be 2048, 3072 or 4096")
    return size


def _rate_limit(value: str) -> str:
    """A Flask-Limiter rate-limit string: ``5/minute``, ``20 per 10 minutes``, several joined by ``;``."""
    value = str(value).strip()
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate limit (use e.g. 5/minute or 20 per 10 minutes)") from None
    return value


def _optional_rate_limit(value: str) -> str:
    value = str(value).strip()
    return _rate_limit(value) if value else ""


def _key_prefix(value: str) -> str:
    value = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", value):
        raise ValueError("must be 1-64 letters, digits or . _ : -")
    return value


def _log_format(value: str) -> str:
    value = str(value).strip().lower()
    if value not in ("text", "json"):
        raise ValueError("must be 'text' or 'json'")
    return value


_HEX_COLOUR = re.compile(r"^#([0-9a-fA-F]{6})$")
MIN_ACCENT_CONTRAST = 4.5
MAX_LOGO_BYTES = 256 * 1024
LOGO_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "svg": "image/svg+xml"}


def _brand_name(value: str) -> str:
    value = str(value).strip()
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise ValueError("must be 1-64 printable characters")
    return value


def hex_channels(colour: str) -> tuple[int, int, int]:
    """The red, green and blue values (0-255) of an ``#rrggbb`` colour."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def relative_luminance(colour: str) -> float:
    """WCAG 2.2 relative luminance of an ``#rrggbb`` colour (§ "relative luminance")."""
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in hex_channels(colour))
    ]
    red, green, blue = linear
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_with_white(colour: str) -> float:
    """WCAG 2.2 contrast ratio of ``colour`` against white: (1.05) / (L + 0.05)."""
    return 1.05 / (relative_luminance(colour) + 0.05)


def _brand_colour(value: str) -> str:
    """The accent colour: buttons carry white text on it and links and secondary buttons use it as text on white,
    so it must reach the WCAG 2.2 §1.4.3 contrast of 4.5:1 against white; a paler one is refused, not rendered."""
    value = str(value).strip()
    if not _HEX_COLOUR.match(value):
        raise ValueError(f"{value[:40]!r} is not a colour (use #rrggbb, e.g. #1f5fbf)")
    ratio = contrast_with_white(value)
    if ratio < MIN_ACCENT_CONTRAST:
        raise ValueError(
            f"{value} has a contrast of {ratio:.2f}:1 against white; at least {MIN_ACCENT_CONTRAST}:1 is needed "
            "so that white button text and accent text stay readable (choose a darker colour)"
        )
    return value.lower()


def logo_type(head: bytes) -> str | None:
    """The logo's image type from its first bytes (PNG, JPEG, WebP signatures; SVG by its root element)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if (text.startswith(b"<svg") or text.startswith(b"<?xml")) and b"<svg" in head:
        return "svg"
    return None


def _brand_logo(value: str) -> str | None:
    """A logo file shown on every page, served by idp itself (CSP ``default-src 'self'``)."""
    value = str(value).strip()
    if not value:
        return None
    path = Path(value).resolve()
    try:
        if not path.is_file():  # before opening: a FIFO or a device would block or never end
            raise ValueError(f"{path} is not a file" if path.exists() else f"cannot read {path}: no such file")
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_LOGO_BYTES:
        raise ValueError(f"{path} is {size} bytes; a logo may have at most {MAX_LOGO_BYTES}")
    if logo_type(head) is None:
        raise ValueError(f"{path} is not a PNG, JPEG, WebP or SVG image")
    return str(path)


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its ``IDP_`` name, default, documentation and parser."""

    name: str
    default: Any
    doc: str
    parse: Callable[[Any], Any]


def _default_log_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


SETTINGS: tuple[Setting, ...] = (
    Setting("IDP_ISSUER", "http://127.0.0.1:5000", "Issuer URL; https unless the host is loopback.", _issuer),
    Setting(
        "IDP_DATABASE_URL", "sqlite:///instance/idp.db", "SQLAlchemy URL; PostgreSQL in production.", _database_url
    ),
    Setting(
        "IDP_DATABASE_POOL_SIZE",
        "6",
        "Database connections per worker process (≥ `--threads` + 1 for the background writer).",
        _pool_size,
    ),
    Setting("IDP_REDIS_URL", "", "Shared store for rate-limit counters (unset: process memory).", _redis_url),
    Setting("IDP_KEYS_DIR", "keys", "Signing keys and the keyring manifest.", _keys_dir),
    Setting(
        "IDP_INSTANCE_DIR",
        "instance",
        "Per-installation state: SQLite database, generated secret key.",
        lambda v: str(Path(str(v)).resolve()),
    ),
    Setting("IDP_SECRET_KEY", "", "Session-cookie and CSRF signing key (unset: generated by `idp init`).", _secret_key),
    Setting(
        "IDP_ACCESS_TOKEN_TTL",
        "600",
        "Access-token lifetime in seconds (per-client override allowed).",
        _positive_duration,
    ),
    Setting("IDP_ID_TOKEN_TTL", "600", "ID-token lifetime in seconds.", _positive_duration),
    Setting("IDP_AUTH_CODE_TTL", "60", "Authorization-code lifetime in seconds.", _positive_duration),
    Setting("IDP_REFRESH_TOKEN_TTL", "30d", "Absolute refresh-token (grant) lifetime.", _positive_duration),
    Setting("IDP_REFRESH_TOKEN_IDLE_TTL", "7d", "Refresh token expires when unused this long.", _positive_duration),
    Setting(
        "IDP_REFRESH_TOKEN_REUSE_GRACE",
        "0",
        "Seconds a rotated refresh token is refused without revoking its family (parallel tabs).",
        parse_duration,
    ),
    Setting("IDP_SESSION_TTL", "12h", "Login session lifetime.", _positive_duration),
    Setting(
        "IDP_JWKS_MAX_AGE",
        "300",
        "Cache-Control max-age of JWKS and discovery; a new key is published at least this long before it signs.",
        parse_duration,
    ),
    Setting("IDP_SIGNING_KEY_SIZE", "2048", "RSA modulus size of new signing keys: 2048, 3072 or 4096.", _key_size),
    Setting(
        "IDP_TRUSTED_PROXIES",
        "0",
        "How many reverse proxies in front of idp to trust for `X-Forwarded-For` and `X-Forwarded-Proto`.",
        _non_negative_int,
    ),
    Setting(
        "IDP_RATE_LIMIT_LOGIN_IP",
        "20 per 5 minutes",
        "Failed logins allowed per client IP; over it, every login from that IP waits (429).",
        _rate_limit,
    ),
    Setting(
        "IDP_RATE_LIMIT_LOGIN_USER",
        "5 per minute",
        "Failed logins allowed per username, from any IP; over it, that username waits (429). Keep the window short.",
        _rate_limit,
    ),
    Setting(
        "IDP_RATE_LIMIT_CLIENT_AUTH",
        "20 per minute",
        "Failed client authentications at /token, /introspect and /revoke allowed per client id and per IP.",
        _rate_limit,
    ),
    Setting(
        "IDP_RATE_LIMIT_CLIENT_CEILING",
        "",
        "Optional ceiling on authenticated /token requests per client, e.g. `6000 per minute` (unset: none).",
        _optional_rate_limit,
    ),
    Setting(
        "IDP_RATE_LIMIT_KEY_PREFIX",
        "idp",
        "Prefix of the rate-limit keys in Redis; give each installation sharing a Redis its own.",
        _key_prefix,
    ),
    Setting(
        "IDP_AUDIT_RETENTION",
        "90d",
        "How long audit events are kept; `idp audit prune` deletes older ones (`0`: keep forever).",
        parse_duration,
    ),
    Setting("IDP_BRAND_NAME", "idp", "Product name shown on the login, consent and logout pages.", _brand_name),
    Setting(
        "IDP_BRAND_COLOR",
        "#1f5fbf",
        "Accent colour of the pages (`#rrggbb`); must contrast 4.5:1 with white (WCAG 2.2 §1.4.3).",
        _brand_colour,
    ),
    Setting(
        "IDP_BRAND_LOGO",
        "",
        "Path of a logo (PNG, JPEG, WebP or SVG, ≤ 256 KiB) shown above every page (unset: the name only).",
        _brand_logo,
    ),
    Setting("IDP_LOG_FORMAT", None, "`text` or `json` (default: text on a TTY, else json).", _log_format),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def _read_file_sources(cwd: Path) -> dict[str, Any]:
    """Values from ``instance/idp.toml`` (``IDP_*`` keys) and ``.env`` (``IDP_*=value`` lines)."""
    values: dict[str, Any] = {}
    toml_path = cwd / "instance" / "idp.toml"
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{toml_path}: not valid TOML ({exc})") from None
        values.update({k.upper(): v for k, v in data.items()})
    env_path = cwd / ".env"
    if env_path.is_file():
        for line in env_path.read_text("utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge every source and validate each setting once; raise :class:`ConfigError` on the first bad one."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    raw.update(_read_file_sources(Path.cwd()))
    raw.update({k: v for k, v in environ.items() if k.startswith("IDP_")})
    extra: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        (raw if key in _BY_NAME else extra)[key] = value
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        value = raw.get(setting.name, setting.default)
        if value is None and setting.name == "IDP_LOG_FORMAT":
            value = _default_log_format()
        try:
            settings[setting.name] = setting.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{setting.name}: {exc}") from None
    settings.update(extra)
    return settings


def settings_table() -> str:
    """The configuration table of the README, generated from the registry so the two never drift."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = "—" if s.default in ("", None) else f"`{s.default}`"
        rows.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(rows)
