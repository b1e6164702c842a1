"""The signing-key files under ``IDP_KEYS_DIR``: PEM files (mode 0600) and the keyring manifest (SPEC §8).

Layout::

    keys/keyring.json      {"version": 1, "keys": [{"kid", "state", "file", "created_at", ...}, ...]}
    keys/<kid>.pem         PKCS#8 private key, mode 0600
    keys/.lock             flock(2) target so two `idp keys` commands never interleave

Every write is a temporary file, ``fsync``, then ``os.replace`` — atomic on POSIX — so a crash at any point
leaves either the old or the new manifest, each naming only PEM files that are already complete on disk. A PEM
file not named by the manifest is an orphan of an interrupted rotation and is ignored (and later removed by
``prune``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from joserfc.jwk import RSAKey

MANIFEST = "keyring.json"
STATES = ("next", "active", "retired")


class KeyringError(RuntimeError):
    """The keyring cannot be read or changed; ``str(error)`` is one line for the operator."""


@dataclass(frozen=True)
class KeyRecord:
    """One key's entry in the manifest. Times are ISO 8601 UTC strings (``None`` until the event happens)."""

    kid: str
    state: str
    file: str
    created_at: str
    activated_at: str | None = None
    retired_at: str | None = None

    def with_state(self, state: str, now: datetime) -> KeyRecord:
        stamp = now.astimezone(UTC).isoformat()
        if state == "active":
            return replace(self, state=state, activated_at=stamp)
        if state == "retired":
            return replace(self, state=state, retired_at=stamp)
        return replace(self, state=state)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class KeyStore:
    """Reads and writes the key files of one keys directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes to the keyring across processes (and nodes sharing the volume)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read_manifest(self) -> list[KeyRecord]:
        try:
            document = json.loads(self.manifest_path.read_bytes())
            records = [KeyRecord(**entry) for entry in document["keys"]]
        except FileNotFoundError:
            raise KeyringError(f"no keyring at {self.manifest_path}; run `idp init`") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{self.manifest_path} is not a valid keyring manifest ({exc})") from None
        for record in records:
            if record.state not in STATES:
                raise KeyringError(f"{self.manifest_path}: key {record.kid} has unknown state {record.state!r}")
        return records

    def write_manifest(self, records: list[KeyRecord]) -> None:
        body = json.dumps({"version": 1, "keys": [asdict(r) for r in records]}, indent=2).encode() + b"\n"
        atomic_write(self.manifest_path, body, mode=0o644)

    def generate(self, size: int, now: datetime) -> KeyRecord:
        """Create a new RSA key, write its PEM (0600) and return its record (state ``next``, not yet listed)."""
        key = RSAKey.generate_key(size, private=True)
        kid = key.thumbprint()  # RFC 7638 §3
        filename = f"{kid}.pem"
        atomic_write(self.directory / filename, key.as_pem(private=True), mode=0o600)
        return KeyRecord(kid=kid, state="next", file=filename, created_at=now.astimezone(UTC).isoformat())

    def load_private(self, record: KeyRecord) -> RSAKey:
        """Parse one key's PEM (≈ milliseconds: callers cache the result for the life of the process)."""
        try:
            pem = (self.directory / record.file).read_bytes()
        except OSError as exc:
            raise KeyringError(f"cannot read key {record.kid}: {exc.strerror}") from None
        key = RSAKey.import_key(pem)
        if key.thumbprint() != record.kid:
            raise KeyringError(f"key file {record.file} does not match its kid {record.kid}")
        return key

    def remove_file(self, record: KeyRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / record.file).unlink()

    def orphan_files(self, records: list[KeyRecord]) -> list[Path]:
        """PEM files no manifest entry names: leftovers of an interrupted rotation."""
        named = {r.file for r in records}
        return [p for p in self.directory.glob("*.pem") if p.name not in named]
