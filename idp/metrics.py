"""Prometheus metrics served at ``/metrics`` (SPEC §5), safe across worker processes.

``idp serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start: each worker then
writes its samples to memory-mapped files there, and ``/metrics``, whichever worker answers it, adds them up
(prometheus-client's multiprocess mode). Without that variable (tests, one process) the process's own registry
is served. The signing-key ages are read from the keyring when scraped.

Labels are bounded: the endpoint is the matched URL rule (``other`` for unknown paths), never the raw path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from idp.services.keyring import Keyring
from idp.services.keystore import KeyringError, parse_time

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("idp_http_requests_total", "HTTP requests answered.", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "idp_http_request_duration_seconds", "Time to answer an HTTP request.", ["endpoint"], buckets=LATENCY_BUCKETS
)
TOKENS_ISSUED = Counter("idp_tokens_issued_total", "Access tokens issued, by grant type.", ["grant_type"])
EVENTS = Counter("idp_security_events_total", "Audit events (SPEC §10), by name.", ["event"])
RATE_LIMITED = Counter("idp_rate_limited_total", "Requests refused by a rate limit, by limit.", ["limit"])


# The labelled series of each (endpoint, method, status) seen, so a request does not look its series up by
# label values again (``labels()`` validates and joins them each time). Bounded as the labels are.
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    series = _request_series.get((endpoint, method, status))
    if series is None:
        series = _request_series[(endpoint, method, status)] = (
            REQUESTS.labels(endpoint, method, str(status)),
            LATENCY.labels(endpoint),
        )
    series[0].inc()
    series[1].observe(seconds)


def count_event(event: str, grant_type: object = None, amount: int = 1) -> None:
    """``amount`` audit events of one name; ``token.issued`` also counts toward its grant type. (The background
    writer counts the hot path's events once per batch: each increment costs a lock and a file write.)"""
    EVENTS.labels(event).inc(amount)
    if event == "token.issued" and isinstance(grant_type, str):
        TOKENS_ISSUED.labels(grant_type).inc(amount)


class KeyringAges(Collector):
    """``idp_signing_key_age_seconds{kid,state}``: how long each published key has been in its state, read from
    the keyring at scrape time (an operator alerts when the active key is older than the rotation period)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "idp_signing_key_age_seconds", "Seconds since the key entered its state.", labels=["kid", "state"]
        )
        try:
            records = self.keyring.current().records
        except KeyringError:
            records = ()
        now = datetime.now(UTC)
        for record in records:
            stamp = {"active": record.activated_at, "retired": record.retired_at}.get(record.state, record.created_at)
            since = parse_time(stamp)
            if since is not None:
                family.add_metric([record.kid, record.state], (now - since).total_seconds())
        yield family


def exposition(keyring: Keyring) -> tuple[bytes, str]:
    """The text exposition of every worker's samples plus the keyring ages."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, TOKENS_ISSUED, EVENTS, RATE_LIMITED):
            registry.register(collector)
    registry.register(KeyringAges(keyring))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def timer() -> Callable[[], float]:
    """Seconds since this call, for request latency."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
