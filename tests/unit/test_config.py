"""Configuration registry (SPEC §3): defaults, sources, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from idp.config import SETTINGS, ConfigError, load_settings, parse_duration


def test_defaults_match_the_spec(tmp_path):
    s = load_settings(environ={})
    assert s["IDP_ISSUER"] == "http://127.0.0.1:5000"
    assert s["IDP_DATABASE_URL"] == f"sqlite:///{tmp_path / 'instance' / 'idp.db'}"
    assert s["IDP_REDIS_URL"] is None
    assert (s["IDP_ACCESS_TOKEN_TTL"], s["IDP_ID_TOKEN_TTL"], s["IDP_AUTH_CODE_TTL"]) == (600, 600, 60)
    assert s["IDP_REFRESH_TOKEN_TTL"] == 30 * 86400
    assert s["IDP_REFRESH_TOKEN_IDLE_TTL"] == 7 * 86400
    assert s["IDP_REFRESH_TOKEN_REUSE_GRACE"] == 0
    assert s["IDP_SESSION_TTL"] == 12 * 3600
    assert s["IDP_JWKS_MAX_AGE"] == 300
    assert s["IDP_TRUSTED_PROXIES"] == 0
    assert s["IDP_SIGNING_KEY_SIZE"] == 2048


def test_every_setting_is_documented():
    for setting in SETTINGS:
        assert setting.name.startswith("IDP_") and setting.doc


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600), ("90s", 90), ("10m", 600), ("12h", 43200), ("30d", 2592000), (" 5 ", 5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_environment_beats_files_and_overrides_beat_environment(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "idp.toml").write_text('IDP_ACCESS_TOKEN_TTL = "100"\nIDP_ID_TOKEN_TTL = 200\n')
    (tmp_path / ".env").write_text("IDP_AUTH_CODE_TTL=30\n# comment\n")
    s = load_settings(environ={"IDP_ID_TOKEN_TTL": "300"})
    assert (s["IDP_ACCESS_TOKEN_TTL"], s["IDP_ID_TOKEN_TTL"], s["IDP_AUTH_CODE_TTL"]) == (100, 300, 30)
    s = load_settings({"IDP_ID_TOKEN_TTL": 400}, environ={"IDP_ID_TOKEN_TTL": "300"})
    assert s["IDP_ID_TOKEN_TTL"] == 400


@pytest.mark.parametrize(
    "issuer",
    [
        "https://id.example.com",
        "http://127.0.0.1:8080",
        "http://localhost:5000",
        "http://[::1]:5000",
        "https://id.example.com/tenant/",
    ],
)
def test_acceptable_issuers(issuer):
    assert load_settings(environ={"IDP_ISSUER": issuer})["IDP_ISSUER"] == issuer.rstrip("/")


BAD = [
    ({"IDP_ISSUER": "http://id.example.com"}, "IDP_ISSUER: must use https unless the host is loopback"),
    ({"IDP_ISSUER": "https://id.example.com/?x=1"}, "IDP_ISSUER: must not contain a query or fragment"),
    ({"IDP_ISSUER": "id.example.com"}, "IDP_ISSUER:"),
    ({"IDP_ACCESS_TOKEN_TTL": "ten minutes"}, "IDP_ACCESS_TOKEN_TTL:"),
    ({"IDP_ACCESS_TOKEN_TTL": "0"}, "IDP_ACCESS_TOKEN_TTL: must be greater than zero"),
    ({"IDP_REFRESH_TOKEN_TTL": "-5"}, "IDP_REFRESH_TOKEN_TTL:"),
    ({"IDP_TRUSTED_PROXIES": "many"}, "IDP_TRUSTED_PROXIES:"),
    ({"IDP_SIGNING_KEY_SIZE": "1024"}, "IDP_SIGNING_KEY_SIZE: must be 2048, 3072 or 4096"),
    ({"IDP_REDIS_URL": "http://127.0.0.1:6379"}, "IDP_REDIS_URL:"),
    ({"IDP_DATABASE_URL": "not-a-url"}, "IDP_DATABASE_URL:"),
    ({"IDP_SECRET_KEY": "short"}, "IDP_SECRET_KEY: must be at least 32 characters"),
    ({"IDP_LOG_FORMAT": "xml"}, "IDP_LOG_FORMAT:"),
]


@pytest.mark.parametrize(("env", "message"), BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_bad_values_raise_one_clear_line(env, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_keys_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "keys").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"IDP_KEYS_DIR: .* is not a directory"):
        load_settings(environ={"IDP_KEYS_DIR": str(tmp_path / "keys")})


@pytest.mark.parametrize(
    ("name", "value"),
    [("IDP_ISSUER", "http://id.example.com"), ("IDP_ACCESS_TOKEN_TTL", "soon"), ("IDP_KEYS_DIR", "/etc/hostname")],
)
def test_server_refuses_to_start_with_one_line_and_non_zero_exit(tmp_path, name, value):
    env = {"PATH": "/usr/bin:/bin", name: value}
    result = subprocess.run(
        [sys.executable, "-m", "idp.cli", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {name}:")
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_refuses_before_init(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "idp.cli", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no IDP_SECRET_KEY and no instance/secret_key: run `idp init` first"
    ]
