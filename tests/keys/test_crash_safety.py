"""A rotation that fails or is killed at any point leaves a keyring every process can load and sign with
(SPEC §8); its leftovers are removed by ``prune``."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from idp.services.keys import init_keyring, prune, rotate
from idp.services.keystore import MANIFEST, KeyringError, KeyStore
from tests.keys.conftest import (
    assert_keyring_usable,
    assert_no_leftovers,
    assert_one_error_line,
    disk_snapshot,
    kid_in,
    make_rotatable,
)


class InjectedFault(OSError):
    def __init__(self, step: str) -> None:
        super().__init__(errno.EIO, f"injected fault: {step}")


def _always(*_args: Any) -> bool:
    return True


def _regular_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _directory(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def _to_pem(_src: Any, dst: Any) -> bool:
    return str(dst).endswith(".pem")


def _to_manifest(_src: Any, dst: Any) -> bool:
    return Path(dst).name == MANIFEST


# step -> (object, attribute, which matching call fails, which calls match). Rotation's I/O runs in this order:
# generate key; PEM temp fsync, rename, directory fsync; manifest temp fsync, rename, directory fsync.
STEPS: dict[str, tuple[Any, str, int, Callable[..., bool]]] = {
    "generate-key": (RSAKey, "generate_key", 1, _always),
    "write-pem": (os, "fsync", 1, _regular_file),
    "rename-pem": (os, "replace", 1, _to_pem),
    "sync-dir-after-pem": (os, "fsync", 1, _directory),
    "write-manifest-temp": (os, "fsync", 2, _regular_file),
    "replace-manifest": (os, "replace", 1, _to_manifest),
    "sync-dir-after-manifest": (os, "fsync", 2, _directory),
}


def inject(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make the ``nth`` call of the step's function that matches its predicate raise :class:`InjectedFault`.
    Only this thread's calls count, so a stray background thread cannot shift the failure point."""
    owner, name, nth, matches = STEPS[step]
    original = getattr(owner, name)
    me = threading.get_ident()
    seen = 0

    def faulty(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        if threading.get_ident() == me and matches(*args):
            seen += 1
            if seen == nth:
                raise InjectedFault(step)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, faulty)


@pytest.mark.parametrize("step", list(STEPS))
def test_a_rotation_failing_at_any_step_leaves_a_usable_keyring(monkeypatch, store, keys_dir, step):
    make_rotatable(store)
    before = (keys_dir / MANIFEST).read_bytes()
    old_next = kid_in("next", keys_dir)
    with monkeypatch.context() as patched:
        inject(patched, step)
        with pytest.raises((KeyringError, InjectedFault)) as failure:
            rotate(store, 2048, 0)
    assert "\n" not in str(failure.value)

    view = assert_keyring_usable(keys_dir)
    if step == "sync-dir-after-manifest":
        # The new manifest is already in place: the rotation is visible, and the error says so.
        assert view.active_kid == old_next
        assert "could not be synced" in str(failure.value)
    else:
        assert (keys_dir / MANIFEST).read_bytes() == before
        assert view.active_kid != old_next

    prune(store, 600)
    assert_no_leftovers(keys_dir)
    make_rotatable(store)
    rotate(store, 2048, 0)  # and the keyring still rotates
    assert_keyring_usable(keys_dir)


@pytest.mark.parametrize("step", ["write-pem", "replace-manifest"])
def test_a_failed_rotation_is_one_error_line_on_the_cli(monkeypatch, cli, store, keys_dir, step):
    make_rotatable(store)
    before = (keys_dir / MANIFEST).read_bytes()
    inject(monkeypatch, step)
    line = assert_one_error_line(cli("keys", "rotate"))
    assert "injected fault" in line
    assert (keys_dir / MANIFEST).read_bytes() == before


def test_prune_removes_leftovers_of_interrupted_rotations(cli, store, keys_dir):
    named = disk_snapshot(keys_dir)
    (keys_dir / "orphan-from-a-crash.pem").write_bytes(b"half a key")
    (keys_dir / ".keyring.json.abc123.tmp").write_bytes(b'{"version": 1, "ke')
    # A temp file cut off mid-write can hold part of a private key: generate one now and keep its first half.
    pem = RSAKey.generate_key(2048, private=True).as_pem(private=True)
    (keys_dir / ".somekid.pem.def456.tmp").write_bytes(pem[: len(pem) // 2])

    result = cli("keys", "prune", "--json")
    assert result.exit_code == 0, result.output
    assert disk_snapshot(keys_dir) == named
    assert_no_leftovers(keys_dir)


def _lock_is_held(keys_dir: Path) -> bool:
    with open(keys_dir / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _rotate_and_kill(env: dict[str, str], keys_dir: Path, delay: float) -> int | None:
    """Start a real `idp keys rotate`, SIGKILL it ``delay`` seconds after it takes the keyring lock; return its
    exit status (``-SIGKILL`` when the kill landed)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "idp.cli", "keys", "rotate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while process.poll() is None and not _lock_is_held(keys_dir) and time.monotonic() < deadline:
            time.sleep(0.003)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        return process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _kill_rotations(env: dict[str, str], attempts: int, rng: random.Random, deadline: float) -> list[int | None]:
    """One lane: SIGKILL `idp keys rotate` at random moments, checking the invariant after each attempt."""
    store = KeyStore(env["IDP_KEYS_DIR"])
    outcomes: list[int | None] = []
    for _ in range(attempts):
        if time.monotonic() > deadline:
            break
        make_rotatable(store)
        # Key generation dominates the locked section (~50-300 ms); the writes follow it.
        outcomes.append(_rotate_and_kill(env, store.directory, delay=rng.uniform(0, 0.3)))
        try:
            assert_keyring_usable(store.directory)
        except Exception as exc:
            raise AssertionError(f"exit {outcomes[-1]} left a broken keyring in {store.directory}") from exc
    return outcomes


def test_sigkill_at_random_moments_never_breaks_the_keyring(settings, tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Three keyrings side by side, so 15 kills fit in the time budget (start-up dominates each attempt).
    lanes = []
    for lane in range(3):
        keys_dir = tmp_path / f"keys-{lane}"
        init_keyring(KeyStore(keys_dir), 2048)
        lanes.append({**os.environ, **settings, "IDP_KEYS_DIR": str(keys_dir)})
    deadline = time.monotonic() + 9  # bounded however slow the machine: fewer attempts, never longer
    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = [pool.submit(_kill_rotations, env, 5, random.Random(rng.random()), deadline) for env in lanes]
        outcomes = [status for future in futures for status in future.result(timeout=30)]
    assert -signal.SIGKILL in outcomes, f"no kill landed (seed {seed}): {outcomes}"

    for env in lanes:
        prune(KeyStore(env["IDP_KEYS_DIR"]), 600)
        assert_no_leftovers(Path(env["IDP_KEYS_DIR"]))
        assert_keyring_usable(Path(env["IDP_KEYS_DIR"]))
