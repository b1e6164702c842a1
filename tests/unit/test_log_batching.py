"""The background writer's audit log lines go out in one write per batch (idp/logging_setup.py), and are still one
line and one ``logging`` record per event (SPEC §10)."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from idp.logging_setup import BatchingStreamHandler, batched_lines
from idp.services import audit
from idp.services.background import BackgroundWriter, writer


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream(app: Flask) -> Iterator[CountingStream]:
    handler = next(h for h in logging.getLogger("idp").handlers if isinstance(h, BatchingStreamHandler))
    counting = CountingStream()
    previous = handler.setStream(counting)
    yield counting
    handler.setStream(previous)


def lines(stream: CountingStream) -> list[str]:
    return stream.getvalue().splitlines()


def test_lines_logged_in_a_batch_are_written_at_once_when_it_ends(stream: CountingStream) -> None:
    with batched_lines():
        for n in range(3):
            logging.getLogger("idp.audit").info("line %d", n)
        assert stream.writes == 0
    assert stream.writes == 1
    assert [f"line {n}" in line for n, line in enumerate(lines(stream))] == [True, True, True]


def test_outside_a_batch_each_line_is_written_as_it_is_logged(stream: CountingStream) -> None:
    logging.getLogger("idp.audit").info("first")
    assert stream.writes >= 1 and len(lines(stream)) == 1


def test_a_batch_holds_back_only_its_own_threads_lines(stream: CountingStream) -> None:
    with batched_lines():
        other = threading.Thread(target=logging.getLogger("idp.audit").info, args=("from another thread",))
        other.start()
        other.join()
        assert len(lines(stream)) == 1
        with batched_lines():  # nested: still one batch
            logging.getLogger("idp.audit").info("batched")
    assert len(lines(stream)) == 2


def test_the_background_writer_logs_its_events_in_one_write(
    app: Flask, stream: CountingStream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BackgroundWriter, "_ensure_thread", lambda self: None)  # this test flushes, not the thread
    caplog.set_level(logging.INFO, logger="idp.audit")
    for n in range(5):
        audit.record_later("token.issued", actor="c1", client_id="c1", grant_type="client_credentials", jti=f"j{n}")
    writer(app).flush()
    assert stream.writes == 1
    assert [r.getMessage() for r in caplog.records if r.name == "idp.audit"] == ["token.issued"] * 5
    assert len(lines(stream)) == 5
