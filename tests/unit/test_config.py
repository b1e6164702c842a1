"""Configuration registry (SPEC §3): defaults, sources, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from idp.config import SETTINGS, ConfigError, contrast_with_white, load_settings, parse_duration


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
    ({"IDP_BRAND_NAME": " "}, "IDP_BRAND_NAME: must be 1-64 printable characters"),
    ({"IDP_BRAND_NAME": "x" * 65}, "IDP_BRAND_NAME: must be 1-64 printable characters"),
    ({"IDP_BRAND_NAME": "Acme\nID"}, "IDP_BRAND_NAME: must be 1-64 printable characters"),
    ({"IDP_BRAND_COLOR": "blue"}, "IDP_BRAND_COLOR: 'blue' is not a colour"),
    ({"IDP_BRAND_COLOR": "#12345"}, "IDP_BRAND_COLOR: '#12345' is not a colour"),
    ({"IDP_BRAND_COLOR": "#1f5fbf; color: red"}, "IDP_BRAND_COLOR:"),
    ({"IDP_BRAND_COLOR": "#ffcc00"}, "IDP_BRAND_COLOR: #ffcc00 has a contrast of 1.51:1"),
    ({"IDP_BRAND_LOGO": "/no/such/logo.png"}, "IDP_BRAND_LOGO: cannot read"),
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


@pytest.mark.parametrize(
    ("colour", "ratio"), [("#ffffff", 1.0), ("#000000", 21.0), ("#1f5fbf", 6.09), ("#767676", 4.54)]
)
def test_contrast_with_white_follows_wcag(colour, ratio):
    """WCAG 2.2 contrast ratios; #767676 is the palest grey that passes 4.5:1."""
    assert contrast_with_white(colour) == pytest.approx(ratio, abs=0.01)


def test_accent_colour_at_the_contrast_limit_is_accepted_and_normalised():
    assert load_settings(environ={"IDP_BRAND_COLOR": "#767676"})["IDP_BRAND_COLOR"] == "#767676"
    assert load_settings(environ={"IDP_BRAND_COLOR": "#1F5FBF"})["IDP_BRAND_COLOR"] == "#1f5fbf"
    with pytest.raises(ConfigError, match=r"at least 4\.5:1"):
        load_settings(environ={"IDP_BRAND_COLOR": "#777777"})


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


@pytest.mark.parametrize(
    ("content", "accepted"),
    [
        (PNG, True),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 32, True),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", True),
        (SVG, True),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", True),
        (b"GIF89a" + b"\x00" * 32, False),
        (b"<html><script>alert(1)</script></html>", False),
        (b"", False),
    ],
    ids=["png", "jpeg", "webp", "svg-xml", "svg", "gif", "html", "empty"],
)
def test_logo_must_be_a_png_jpeg_webp_or_svg_file(tmp_path, content, accepted):
    logo = tmp_path / "logo"
    logo.write_bytes(content)
    if accepted:
        assert load_settings(environ={"IDP_BRAND_LOGO": str(logo)})["IDP_BRAND_LOGO"] == str(logo)
    else:
        with pytest.raises(ConfigError, match=r"IDP_BRAND_LOGO: .* is not a PNG, JPEG, WebP or SVG image"):
            load_settings(environ={"IDP_BRAND_LOGO": str(logo)})


def test_logo_larger_than_256_kib_or_a_directory_is_refused(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * (256 * 1024))
    with pytest.raises(ConfigError, match=r"IDP_BRAND_LOGO: .* bytes; a logo may have at most 262144"):
        load_settings(environ={"IDP_BRAND_LOGO": str(big)})
    with pytest.raises(ConfigError, match="IDP_BRAND_LOGO:"):
        load_settings(environ={"IDP_BRAND_LOGO": str(tmp_path)})
