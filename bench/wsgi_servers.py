"""Which production WSGI server should ``idp serve`` run? Throughput and latency of a few candidates.

Builds a throwaway installation (SQLite, fresh keys, secret key) with ``idp init``, then for each server
configuration: starts it on a free loopback port with access logging off, waits for ``/healthz``, warms it up,
runs ``wrk`` against ``/healthz`` (the cheapest route: measures the server, not idp) and ``/jwks`` (prepared
bytes plus the keyring's freshness check: what relying parties actually hit), and stops it. Prints a Markdown
table. Only 127.0.0.1 is ever contacted; every process started here is stopped and the directory removed, even
on failure or Ctrl-C.

Each measurement first waits (up to two minutes) for the CPUs to be quiet, and is marked as taken under outside
load if they were not, before or after; with ``--rounds N`` the servers take turns and the table gives medians
over the quiet rounds.

    .venv/bin/python bench/wsgi_servers.py [--duration 10] [--connections 16] [--rounds 3]

Client and servers share the machine, so figures are comparable with each other, not with production.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from types import FrameType

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
ENDPOINTS = ("/healthz", "/jwks")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_THREADS = 2
WARMUP_SECONDS = 2
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
QUIET_BUSY_FRACTION = 0.15  # the idle server plus the OS stay well under this
QUIET_TIMEOUT = 120.0
APP_FACTORY = "idp:create_server_app"


@dataclass(frozen=True)
class Server:
    name: str
    argv: Callable[[int], list[str]]


def _gunicorn(worker_class: str, workers: int, threads: int = 1) -> Callable[[int], list[str]]:
    # gunicorn logs no access lines unless --access-logfile is given.
    def argv(port: int) -> list[str]:
        args = [str(BIN / "gunicorn"), "--worker-class", worker_class, "--workers", str(workers)]
        if worker_class == "gthread":
            args += ["--threads", str(threads)]
        return [*args, "--bind", f"{HOST}:{port}", "--graceful-timeout", "10", f"{APP_FACTORY}()"]

    return argv


def _granian(workers: int, blocking_threads: int | None = None) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        args = [str(BIN / "granian"), "--interface", "wsgi", "--http", "1", "--workers", str(workers)]
        if blocking_threads is not None:
            args += ["--blocking-threads", str(blocking_threads)]
        return [
            *args,
            *("--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"),
            *("--workers-kill-timeout", "10", "--factory", APP_FACTORY),
        ]

    return argv


SERVERS = (
    Server("gunicorn sync, 2 workers", _gunicorn("sync", 2)),
    Server("gunicorn gthread, 2 workers x 4 threads", _gunicorn("gthread", 2, 4)),
    Server("granian wsgi, 2 workers (default blocking threads)", _granian(2)),
    Server("granian wsgi, 2 workers x 4 blocking threads", _granian(2, 4)),
)


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: str
    outside_load: bool = False


class BenchError(RuntimeError):
    pass


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the `finally` blocks stop the servers and remove the directory.
    raise SystemExit(143)


@contextmanager
def installation() -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh, initialised idp installation in a temporary directory, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    try:
        env = {
            **os.environ,
            "IDP_DATABASE_URL": f"sqlite:///{root}/idp.db",
            "IDP_KEYS_DIR": str(root / "keys"),
            "IDP_INSTANCE_DIR": str(root / "instance"),
            "IDP_LOG_FORMAT": "json",
        }
        init = subprocess.run(
            [str(BIN / "idp"), "init"], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if init.returncode != 0:
            raise BenchError(f"idp init failed ({init.returncode}): {init.stderr.strip()}")
        yield root, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before answering:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BenchError(f"server not healthy after {START_TIMEOUT:.0f}s:\n{_log_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (master and workers), SIGKILL whatever is left after a grace period."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers: workers whose master has already exited
    proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running(server: Server, root: Path, env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    log = root / f"server-{port}.log"
    with log.open("wb") as out:
        # A session of its own, so that stopping it reaches the workers and nothing else.
        proc = subprocess.Popen(
            server.argv(port),
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, port, log)
        yield port
    finally:
        _stop(proc)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"unexpected latency {text!r} in wrk output")
    return float(match[1]) * _UNIT_MS[match[2]]


def parse_wrk(output: str) -> Result:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise BenchError(f"could not parse wrk output:\n{output}")
    errors = []
    socket_errors = re.search(r"Socket errors: (.+)", output)
    if socket_errors:
        errors.append(f"socket {socket_errors[1].strip()}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors.append(f"{non_2xx[1]} non-2xx")
    return Result(float(rps[1]), _ms(p50[1]), _ms(p99[1]), "; ".join(errors) or "-")


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (Linux /proc/stat); 0.0 where that file is missing."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total_0, idle_0 = sample()
        time.sleep(seconds)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total_1 - total_0
    return 1.0 - (idle_1 - idle_0) / total if total else 0.0


def wait_quiet() -> bool:
    """Wait (bounded) until nothing else loads the CPUs, so another job's burst is not booked to a server."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    while time.monotonic() < deadline:
        if cpu_busy_fraction() < QUIET_BUSY_FRACTION:
            return True
    return False


def wrk(port: int, path: str, seconds: int, connections: int) -> Result:
    argv = [WRK, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://{HOST}:{port}{path}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def table(results: dict[tuple[str, str], list[Result]]) -> str:
    """Medians over the rounds measured on a quiet machine (over all rounds if none was); the req/s range shows
    the spread of the rounds used."""
    rows = [
        "| server | endpoint | req/s (median) | req/s (min-max) | p50 ms | p99 ms | quiet rounds | errors |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for (name, path), runs in results.items():
        quiet = [r for r in runs if not r.outside_load]
        used = quiet or runs
        rps = [r.requests_per_second for r in used]
        p50 = median(r.p50_ms for r in used)
        p99 = median(r.p99_ms for r in used)
        errors = "; ".join(sorted({r.errors for r in runs} - {"-"})) or "-"
        rows.append(
            f"| {name} | `{path}` | {median(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} "
            f"| {p50:.2f} | {p99:.2f} | {len(quiet)}/{len(runs)} | {errors} |"
        )
    return "\n".join(rows)


def _version(tool: str) -> str:
    done = subprocess.run([str(BIN / tool), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, choices=range(1, 61), metavar="1..60", help="seconds")
    parser.add_argument("--connections", type=int, default=16, choices=range(2, 257), metavar="2..256")
    parser.add_argument("--rounds", type=int, default=1, choices=range(1, 11), metavar="1..10", help="report medians")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)

    results: dict[tuple[str, str], list[Result]] = {}
    with installation() as (root, env):
        # Round-robin rather than all rounds of one server in a row, so a burst of outside load hits every server.
        for round_ in range(1, args.rounds + 1):
            for server in SERVERS:
                print(f"# round {round_}, {server.name}: {' '.join(server.argv(0))}", file=sys.stderr, flush=True)
                with running(server, root, env) as port:
                    for path in ENDPOINTS:
                        wrk(port, path, WARMUP_SECONDS, args.connections)
                        quiet_before = wait_quiet()
                        result = wrk(port, path, args.duration, args.connections)
                        # Still busy once our client stopped: someone else was probably running all along.
                        if not (quiet_before and cpu_busy_fraction() < QUIET_BUSY_FRACTION):
                            result = replace(result, outside_load=True)
                        load = " (outside CPU load)" if result.outside_load else ""
                        print(f"  {path}: {result.requests_per_second:,.0f} req/s{load}", file=sys.stderr, flush=True)
                        results.setdefault((server.name, path), []).append(result)
    print(
        f"wrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s --latency, {args.rounds} round(s), "
        f"{os.cpu_count()} CPUs shared by client and server; "
        f"{_version('gunicorn')}, {_version('granian')}, Python {sys.version.split()[0]}\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
