"""The signing-key files under ``IDP_KEYS_DIR``: PEM files (mode 0600) and the keyring manifest (SPEC §8).

Layout::

    keys/keyring.json      {"version": 1, "keys": [{"kid", "state", "file", "created_at", ...}, ...]}
    keys/<kid>.pem         PKCS#8 private key, mode 0600
    keys/.lock             flock(2) target so two `idp keys` commands never interleave

Every write is a temporary file, ``fsync``, then ``os.replace`` — atomic on POSIX — so a crash at any point
leaves either the old or the new manifest, each naming only PEM files that are already complete on disk. A PEM
file not named by the manifest, or a ``.*.tmp`` file, is a leftover of an interrupted change: it is ignored, and
removed by ``prune``.

I/O failures surface as :class:`KeyringError` so the CLI prints one line instead of a traceback (SPEC §4).
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


class NotDurableError(OSError):
    """The new file is in place, but syncing its directory failed: a crash may still bring back the old file."""


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


@contextlib.contextmanager
def reporting(action: str) -> Iterator[None]:
    """Turn an I/O failure while doing ``action`` into a one-line :class:`KeyringError` (SPEC §4)."""
    try:
        yield
    except NotDurableError as exc:
        raise KeyringError(
            f"{action}: the change is visible but could not be synced to disk ({exc.strerror}); "
            "a crash may undo it — check the disk, then `idp keys list`"
        ) from None
    except OSError as exc:
        raise KeyringError(f"cannot {action}: {exc.strerror or exc}") from None


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
    try:
        _fsync_dir(path.parent)
    except OSError as exc:
        raise NotDurableError(exc.errno, exc.strerror) from exc


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
        with reporting(f"lock {self.directory}"):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = open(self.directory / ".lock", "a+b")  # noqa: SIM115 - closed by the `with` below
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read_manifest(self) -> list[KeyRecord]:
        try:
            data = self.manifest_path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(f"no keyring at {self.manifest_path}; run `idp init`") from None
        except OSError as exc:
            raise KeyringError(f"cannot read {self.manifest_path}: {exc.strerror or exc}") from None
        try:
            document = json.loads(data)
            records = [KeyRecord(**entry) for entry in document["keys"]]
            for record in records:
                self._check(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{self.manifest_path} is not a valid keyring manifest ({exc})") from None
        kids = [r.kid for r in records]
        if len(set(kids)) != len(kids):
            raise KeyringError(f"{self.manifest_path} lists a kid twice")
        return records

    @staticmethod
    def _check(record: KeyRecord) -> None:
        """Reject an entry the verbs cannot work with; raises ``ValueError``/``TypeError`` with the reason."""
        if record.state not in STATES:
            raise ValueError(f"key {record.kid} has unknown state {record.state!r}")
        if not isinstance(record.kid, str) or not isinstance(record.file, str) or "/" in record.file:
            raise ValueError(f"key {record.kid} has a bad kid or file name")
        if parse_time(record.created_at) is None:
            raise ValueError(f"key {record.kid} has no created_at")
        parse_time(record.activated_at)
        if record.state == "retired" and parse_time(record.retired_at) is None:
            raise ValueError(f"retired key {record.kid} has no retired_at")

    def write_manifest(self, records: list[KeyRecord]) -> None:
        body = json.dumps({"version": 1, "keys": [asdict(r) for r in records]}, indent=2).encode() + b"\n"
        with reporting(f"write {self.manifest_path}"):
            atomic_write(self.manifest_path, body, mode=0o644)

    def generate(self, size: int, now: datetime) -> KeyRecord:
        """Create a new RSA key, write its PEM (0600) and return its record (state ``next``, not yet listed).

        The ``kid`` is the key's RFC 7638 §3 JWK thumbprint (SHA-256)."""
        key = RSAKey.generate_key(size, private=True)
        kid = key.thumbprint()
        filename = f"{kid}.pem"
        with reporting(f"write key {filename}"):
            atomic_write(self.directory / filename, key.as_pem(private=True), mode=0o600)
        return KeyRecord(kid=kid, state="next", file=filename, created_at=now.astimezone(UTC).isoformat())

    def load_private(self, record: KeyRecord) -> RSAKey:
        """Parse one key's PEM (≈ milliseconds: callers cache the result for the life of the process)."""
        try:
            pem = (self.directory / record.file).read_bytes()
        except OSError as exc:
            raise KeyringError(f"cannot read key {record.kid}: {exc.strerror}") from None
        try:
            key = RSAKey.import_key(pem)
        except ValueError:
            raise KeyringError(f"key file {record.file} is not an RSA private key in PEM") from None
        if not key.is_private:
            raise KeyringError(f"key file {record.file} holds no private key")
        if key.thumbprint() != record.kid:
            raise KeyringError(f"key file {record.file} does not match its kid {record.kid}")
        return key

    def remove_file(self, path: Path) -> None:
        with reporting(f"remove {path}"):
            path.unlink(missing_ok=True)

    def leftover_files(self, records: list[KeyRecord]) -> list[Path]:
        """Leftovers of interrupted changes: PEM files no manifest entry names, and ``atomic_write`` temporaries
        (which may hold a private key). Only safe to delete while holding :meth:`locked`."""
        named = {r.file for r in records}
        orphans = [p for p in self.directory.glob("*.pem") if p.name not in named]
        return orphans + list(self.directory.glob(".*.tmp"))
