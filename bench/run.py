"""`make bench`: client-credentials throughput of a real idp server against this machine's raw RSA-2048 sign rate.

Steps, all on loopback and bounded in time:
1. a throwaway installation (`idp init` in a temporary folder) and one client-credentials client;
2. the raw RSA-2048 PKCS#1 v1.5 / SHA-256 sign rate of one core, measured now (the baseline);
3. `idp serve --workers 1` driven by `wrk` (8 connections, 10 s) posting client-credentials requests;
4. tokens/s, p50/p99 latency, the server's peak RSS, and tokens/s ÷ raw sign rate.

Requires `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import base64
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
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BIN = Path(sys.executable).parent
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))


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


def wrk(url: str, script: Path, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rate": rate, "p50": pct("50"), "p99": pct("99"), "errors": float(bad.group(1)) if bad else 0.0}


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
    server = None
    try:
        run_idp(env, root, "init")
        client = json.loads(
            run_idp(
                env,
                root,
                "clients",
                "create",
                "--name",
                "bench",
                "--grant-type",
                "client_credentials",
                "--audience",
                "https://api.example.com",
                "--scope",
                "read",
                "--json",
            )
        )
        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        script = root / "token.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.body = "grant_type=client_credentials"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            f'wrk.headers["Authorization"] = "Basic {basic}"\n'
        )
        print("measuring raw RSA-2048 sign rate (one thread, 3 s) ...", flush=True)
        baseline = raw_sign_rate()
        log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the server
        server = subprocess.Popen(
            [str(BIN / "idp"), "serve", "--port", str(port), "--workers", str(WORKERS), "--threads", str(THREADS)],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        wait_ready(url)
        print(f"warming up, then wrk -t2 -c{CONNECTIONS} -d{DURATION}s POST /token ...", flush=True)
        wrk(url + "/token", script, 2)
        result = wrk(url + "/token", script, DURATION)
        rss = peak_rss_mib(process_tree(server.pid))
        print()
        print(
            f"| figure | value |\n|---|---|\n"
            f"| raw RSA-2048 signs/s (1 thread) | {baseline:,.0f} |\n"
            f"| client-credentials tokens/s ({WORKERS} worker, {THREADS} threads) | {result['rate']:,.0f} |\n"
            f"| latency p50 / p99 | {result['p50']:.2f} ms / {result['p99']:.2f} ms |\n"
            f"| non-2xx responses | {result['errors']:.0f} |\n"
            f"| server peak RSS (master + workers) | {rss:.0f} MiB |\n"
            f"| tokens/s ÷ raw sign rate | {result['rate'] / baseline:.2f} (target ≥ 0.65) |"
        )
        return 0 if result["errors"] == 0 else 1
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
