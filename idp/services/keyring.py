"""The running keyring: parsed keys, the prepared JWKS and the signer (SPEC §8).

Each process holds one :class:`Keyring`. It looks at the manifest's ``stat`` at most once per
``check_interval`` seconds and, when the file was replaced, builds a new immutable :class:`KeyringView`.
Private keys are parsed once per process and kept by ``kid``, so a rotation costs one parse per new key and the
request path never parses a PEM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.jwk import RSAKey

from idp.services.keystore import KeyRecord, KeyringError, KeyStore

log = logging.getLogger(__name__)

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


@dataclass(frozen=True)
class KeyringView:
    """One consistent snapshot of the keyring: what to publish and what to sign with."""

    records: tuple[KeyRecord, ...]
    signing_key: RSAKey
    verification_keys: dict[str, RSAKey]
    jwks_body: bytes
    jwks_etag: str

    @property
    def active_kid(self) -> str:
        return str(self.signing_key.kid)

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        """RS256-sign ``claims`` with the active key; the header carries its ``kid`` (RFC 7515 §4.1.4)."""
        header = {"alg": "RS256", "typ": typ, "kid": self.signing_key.kid}
        # The claims are ours and JSON-ready (ints and strings), so they go to joserfc's JWS serialisation as
        # compact JSON (RFC 7519 §7.1 step 1) rather than through jwt.encode's per-claim type conversion.
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        return jws.serialize_compact(header, payload, self.signing_key, algorithms=["RS256"])


def strong_etag(body: bytes) -> str:
    """A strong validator (RFC 9110 §8.8.3) derived from the exact bytes served."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _public_jwk(key: RSAKey) -> dict[str, Any]:
    """The public members only (RFC 7518 §6.3.1): never ``d``, ``p``, ``q``, ``dp``, ``dq`` or ``qi`` (§6.3.2)."""
    jwk: dict[str, Any] = {k: v for k, v in key.as_dict(private=False).items() if k not in PRIVATE_MEMBERS}
    jwk.update({"kid": key.kid, "use": "sig", "alg": "RS256"})
    return jwk


class Keyring:
    """Process-wide holder of the current :class:`KeyringView`, reloaded when the manifest changes."""

    def __init__(self, directory: str, check_interval: float = 1.0) -> None:
        self.store = KeyStore(directory)
        self.check_interval = check_interval
        self._parsed: dict[str, RSAKey] = {}
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._view: KeyringView | None = None

    def _manifest_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.store.manifest_path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _key(self, record: KeyRecord) -> RSAKey:
        key = self._parsed.get(record.kid)
        if key is None:
            key = self.store.load_private(record)
            key.ensure_kid()
            self._parsed[record.kid] = key
        return key

    def _build(self) -> KeyringView:
        records = self.store.read_manifest()
        active = [r for r in records if r.state == "active"]
        if len(active) != 1:
            raise KeyringError(f"keyring has {len(active)} active keys; expected exactly one")
        keys = {r.kid: self._key(r) for r in records}
        order = {"active": 0, "next": 1, "retired": 2}
        published = sorted(records, key=lambda r: order[r.state])
        body = json.dumps({"keys": [_public_jwk(keys[r.kid]) for r in published]}, separators=(",", ":")).encode()
        for kid in set(self._parsed) - set(keys):
            del self._parsed[kid]
        return KeyringView(tuple(records), keys[active[0].kid], keys, body, strong_etag(body))

    def load(self) -> KeyringView:
        """Load now (start-up); raises :class:`KeyringError` if the keyring is unusable."""
        with self._lock:
            stamp = self._manifest_stamp() if self.store.exists() else None
            self._view = self._build()
            self._stamp = stamp
            self._next_check = time.monotonic() + self.check_interval
            return self._view

    def current(self) -> KeyringView:
        """The current view, reloading first if the manifest was replaced (checked at most once a interval)."""
        view = self._view
        if view is None:
            return self.load()
        if time.monotonic() < self._next_check:
            return view
        with self._lock:
            if time.monotonic() < self._next_check or self._view is None:
                return self._view or self._build()
            self._next_check = time.monotonic() + self.check_interval
            try:
                stamp = self._manifest_stamp()
                if stamp != self._stamp:
                    self._view = self._build()
                    self._stamp = stamp
                    log.info("keyring reloaded", extra={"active_kid": self._view.active_kid})
            except (OSError, KeyringError, ValueError) as exc:
                # Keep serving the last good keyring rather than fail every request.
                log.error("keyring reload failed; keeping the previous keys: %s", exc)
            return self._view
