"""`make bench`: token throughput of a real idp server against this machine's raw RSA-2048 sign rate.

Steps, all on loopback and bounded in time:
1. a throwaway installation (`idp init` in a temporary folder, SQLite), a client-credentials client, a web app
   (authorization code + refresh, skip-consent) and a signed-in user;
2. the raw RSA-2048 PKCS#1 v1.5 / SHA-256 sign rate of one thread, measured now (the baseline);
3. `idp serve --workers 1` driven by `wrk` (8 connections, 10 s) posting client-credentials requests: tokens/s,
   p50/p99 latency, peak RSS and tokens/s ÷ raw sign rate (target ≥ 0.65);
4. the same with `--workers 2` (one per core), reported as tokens/s per core;
5. the authorization-code + refresh mix (bench/code_refresh_mix.lua) on 2 workers, on SQLite and, when a
   PostgreSQL server answers (``BENCH_POSTGRES_URL``, default the local ``postgres@127.0.0.1:5432``), on a
   throwaway PostgreSQL database created for the run and dropped after it.

Requires `wrk` (Debian package `wrk`). `bench/verify.py` (the resource-server verifier) runs after it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from wsgi_servers import cpu_busy_fraction

BIN = Path(sys.executable).parent
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
CORES = os.cpu_count() or 1
HERE = Path(__file__).resolve().parent
CALLBACK = "https://app.example.com/callback"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-password-" + "x" * 12
VERIFIER = "v" * 64  # PKCE verifier shared by every bench authorization (RFC 7636 §4.1 allows 43-128 chars)


def raw_sign_rate(seconds: float = 3.0) -> float:
    """Signatures per second of one thread over a JWT-sized signing input."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = b"e" * 320
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        count += 50
    return count / elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_idp(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "idp"), *args], env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for token in child.read_text().split():
            pids += process_tree(int(token))
    return pids


def peak_rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def wrk(url: str, script: Path, seconds: int, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
        env={**os.environ, **(env or {})},
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    mix = re.search(r"mix: tokens (\d+) authorizations (\d+) failures (\d+)", out)
    duration = float(re.search(r"requests in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    figures = {"rate": rate, "p50": pct("50"), "p99": pct("99"), "errors": float(bad.group(1)) if bad else 0.0}
    if mix:
        figures["tokens"] = int(mix.group(1)) / duration
        figures["authorizations"] = int(mix.group(2)) / duration
        figures["errors"] += int(mix.group(3))
    return figures


def cli_json(env: dict[str, str], root: Path, *args: str, stdin: str | None = None) -> dict[str, str]:
    result = subprocess.run(
        [str(BIN / "idp"), *args, "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        input=stdin,
    )
    return dict(json.loads(result.stdout))


@contextmanager
def serving(env: dict[str, str], root: Path, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    url = f"http://127.0.0.1:{port}"
    with open(root / f"server-{workers}.log", "wb") as log:
        server = subprocess.Popen(
            [str(BIN / "idp"), "serve", "--port", str(port), "--workers", str(workers), "--threads", str(THREADS)],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_ready(url)
            yield server
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


def basic_header(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def client_credentials_script(root: Path, env: dict[str, str]) -> Path:
    client = cli_json(
        env, root, "clients", "create", "--name", "bench", "--grant-type", "client_credentials",
        "--audience", "https://api.example.com", "--scope", "read",
    )  # fmt: skip
    script = root / "token.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.body = "grant_type=client_credentials"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "{basic_header(client["client_id"], client["client_secret"])}"\n'
    )
    return script


def code_flow_setup(root: Path, env: dict[str, str]) -> dict[str, str]:
    """A skip-consent web app and a user; the Lua script's parameters (MIX_*), minus the session cookie."""
    cli_json(env, root, "users", "create", "--username", "bench", "--password-stdin", stdin=PASSWORD + "\n")
    webapp = cli_json(
        env, root, "clients", "create", "--name", "bench-web", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", CALLBACK, "--scope", "openid profile",
        "--skip-consent",
    )  # fmt: skip
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": webapp["client_id"],
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": "bench-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return {
        "MIX_AUTHORIZE_PATH": "/authorize?" + urlencode(query),
        "MIX_BASIC": basic_header(webapp["client_id"], webapp["client_secret"]),
        "MIX_REDEEM_TAIL": "&" + urlencode({"redirect_uri": CALLBACK, "code_verifier": VERIFIER}),
    }


def sign_in(url: str, authorize_path: str) -> str:
    """Log the bench user in through the real login form; the ``Cookie`` header of that browser."""
    browser = requests.Session()
    page = browser.get(url + authorize_path, timeout=10)
    fields = dict(re.findall(r'<input[^>]*\bname="(csrf_token|return_to)"[^>]*\bvalue="([^"]*)"', page.text))
    answer = browser.post(
        url + "/login",
        data={**{k: html.unescape(v) for k, v in fields.items()}, "username": "bench", "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"bench sign-in failed: {answer.status_code}")
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def code_refresh_mix(url: str, mix_env: dict[str, str], store: str) -> tuple[list[tuple[str, str]], int]:
    """The authorization-code + refresh mix against a running 2-worker server; its rows and failure count."""
    print(f"2 workers, {store}: authorization code + refresh mix ...", flush=True)
    mix_env = {**mix_env, "MIX_COOKIE": sign_in(url, mix_env["MIX_AUTHORIZE_PATH"])}
    wrk(url, HERE / "code_refresh_mix.lua", 2, mix_env)
    mix = wrk(url, HERE / "code_refresh_mix.lua", DURATION, mix_env)
    rows = [
        (f"code + refresh mix, 2 workers, {store}: token responses/s", f"{mix['tokens']:,.0f}"),
        (f"code + refresh mix, {store}: authorizations/s", f"{mix['authorizations']:,.0f}"),
        (f"code + refresh mix, {store}: p50 / p99", f"{mix['p50']:.2f} ms / {mix['p99']:.2f} ms"),
    ]
    return rows, int(mix["errors"])


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the run (its SQLAlchemy URL), dropped afterwards; ``None`` when no
    PostgreSQL server answers."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"idp_bench_{os.getpid()}_{int(time.time())}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_mix(base_env: dict[str, str], port: int) -> tuple[list[tuple[str, str]], int]:
    """The mix again with PostgreSQL as the store (its row locks instead of SQLite's one writer)."""
    with postgres_database() as database_url:
        if database_url is None:
            return [("code + refresh mix, PostgreSQL", "skipped: no PostgreSQL server answers")], 0
        root = Path(tempfile.mkdtemp(prefix="idp-bench-pg-"))
        url = f"http://127.0.0.1:{port}"
        env = {
            **base_env,
            "IDP_DATABASE_URL": database_url,
            "IDP_KEYS_DIR": str(root / "keys"),
            "IDP_INSTANCE_DIR": str(root / "instance"),
            "IDP_ISSUER": url,
        }
        try:
            run_idp(env, root, "init")
            mix_env = code_flow_setup(root, env)
            with serving(env, root, port, 2):
                return code_refresh_mix(url, mix_env, "PostgreSQL")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    if shutil.which("wrk") is None:
        print("make bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "IDP_DATABASE_URL": f"sqlite:///{root}/idp.db",
        "IDP_KEYS_DIR": str(root / "keys"),
        "IDP_INSTANCE_DIR": str(root / "instance"),
        "IDP_ISSUER": url,
        "IDP_LOG_FORMAT": "json",
    }
    rows: list[tuple[str, str]] = []
    failures = 0
    try:
        run_idp(env, root, "init")
        cc_script = client_credentials_script(root, env)
        mix_env = code_flow_setup(root, env)
        busy_before = cpu_busy_fraction()  # the load average trails by minutes
        if busy_before > 0.1:
            print(f"warning: the cores are {busy_before:.0%} busy with other work: every figure will be low")
        print("measuring raw RSA-2048 sign rate (one thread, 3 s) ...", flush=True)
        baseline = raw_sign_rate()
        for workers in (1, 2):
            with serving(env, root, port, workers) as server:
                print(f"{workers} worker(s): wrk -t2 -c{CONNECTIONS} -d{DURATION}s POST /token ...", flush=True)
                wrk(url + "/token", cc_script, 2)
                result = wrk(url + "/token", cc_script, DURATION)
                rss = peak_rss_mib(process_tree(server.pid))
                failures += int(result["errors"])
                label = f"client credentials, {workers} worker{'s' if workers > 1 else ''}, {THREADS} threads"
                rows.append((f"{label}: tokens/s", f"{result['rate']:,.0f}"))
                rows.append((f"{label}: p50 / p99", f"{result['p50']:.2f} ms / {result['p99']:.2f} ms"))
                rows.append((f"{label}: peak RSS", f"{rss:.0f} MiB"))
                if workers == 1:
                    # Measured again right after the load; the higher of the two is the (stricter) baseline.
                    baseline = max(baseline, raw_sign_rate())
                    rows.insert(0, ("raw RSA-2048 signs/s (1 thread, best of before/after)", f"{baseline:,.0f}"))
                    ratio = result["rate"] / baseline
                    rows.append(("tokens/s ÷ raw sign rate (1 worker)", f"{ratio:.2f} (target ≥ 0.65)"))
                else:
                    per_core = result["rate"] / min(workers, CORES)
                    rows.append((f"tokens/s per core ({CORES} cores, wrk included)", f"{per_core:,.0f}"))
                    mix_rows, mix_failures = code_refresh_mix(url, mix_env, "SQLite")
                    rows += mix_rows
                    failures += mix_failures
        pg_rows, pg_failures = postgres_mix(env, port)
        rows += pg_rows
        failures += pg_failures
        rows.append(("non-2xx/3xx or unexpected responses", str(failures)))
        rows.append(("cores busy with other work before the run", f"{busy_before:.0%} (quiet: < 10 %)"))
        print("\n| figure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        return 0 if failures == 0 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
