"""The client-credentials lane (idp/web/token_lane.py) answers exactly like the Flask view, and hands every other
request to it with the body intact."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse, create_environ

from idp.web.token_lane import ClientCredentialsLane
from tests.oauth_support import API, CC, OTHER_API, Service, assert_error, basic, service

IGNORED_HEADER_VALUES = {"Content-Length", "X-Request-ID"}


@pytest.fixture
def svc(app: Flask) -> Service:
    return service()


@pytest.fixture
def flask_views(app: Flask) -> Iterator[list[str]]:
    """Paths of the requests that reached Flask's dispatch (the lane's answers never do)."""
    seen: list[str] = []

    @app.before_request
    def count() -> None:
        from flask import request

        seen.append(request.path)

    yield seen


def lane(app: Flask) -> ClientCredentialsLane:
    assert isinstance(app.wsgi_app, ClientCredentialsLane)
    return app.wsgi_app


def both(app: Flask, **request: Any) -> tuple[TestResponse, TestResponse]:
    """The same request answered by the lane (the app as served) and by the Flask view alone."""
    served = Client(app).open("/token", method="POST", **request)
    view = Client(lane(app).flask_wsgi).open("/token", method="POST", **request)
    return served, view


def header_shape(response: TestResponse) -> dict[str, str]:
    return {name: ("…" if name in IGNORED_HEADER_VALUES else value) for name, value in response.headers.items()}


def raw_token_request(app: Flask, svc: Service, **environ_changes: Any) -> list[str]:
    """A client-credentials POST built as a raw WSGI environ (for what the test client will not send); ``None``
    removes a key. The statuses the app started its response with."""
    environ = create_environ(
        "/token",
        method="POST",
        input_stream=io.BytesIO(b"grant_type=client_credentials"),
        content_type="application/x-www-form-urlencoded",
        headers=basic(svc.client_id, svc.key),
    )
    for key, value in environ_changes.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    statuses: list[str] = []
    b"".join(app(environ, lambda status, _headers, _exc=None: statuses.append(status)))
    return statuses


def test_lane_answers_a_client_credentials_request_without_flask_dispatch(
    app: Flask, svc: Service, flask_views: list[str]
) -> None:
    response = Client(app).post("/token", data=CC, headers=basic(svc.client_id, svc.key))
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"
    assert flask_views == []


def test_lane_and_view_answers_have_the_same_shape(app: Flask, svc: Service) -> None:
    served, view = both(app, data={**CC, "scope": "read", "audience": OTHER_API}, headers=basic(svc.client_id, svc.key))
    assert served.status_code == view.status_code == 200
    assert header_shape(served) == header_shape(view)
    assert served.get_json().keys() == view.get_json().keys()
    tokens = [jwt.decode(r.get_json()["access_token"], options={"verify_signature": False}) for r in (served, view)]
    assert tokens[0].keys() == tokens[1].keys()
    assert tokens[0]["aud"] == tokens[1]["aud"] == OTHER_API
    assert tokens[0]["jti"] != tokens[1]["jti"]
    headers = [jwt.get_unverified_header(r.get_json()["access_token"]) for r in (served, view)]
    assert headers[0] == headers[1]


def test_lane_echoes_a_sane_request_id_and_replaces_a_hostile_one(app: Flask, svc: Service) -> None:
    client = Client(app)
    sane = client.post("/token", data=CC, headers={**basic(svc.client_id, svc.key), "X-Request-ID": "trace-42"})
    assert sane.headers["X-Request-ID"] == "trace-42"
    hostile = client.post("/token", data=CC, headers={**basic(svc.client_id, svc.key), "X-Request-ID": "a\tb"})
    assert hostile.status_code == 200
    assert hostile.headers["X-Request-ID"] not in ("", "a\tb")


@pytest.mark.parametrize(
    ("params", "wrong_key", "status", "error"),
    [
        ({}, True, 401, "invalid_client"),
        ({"scope": "admin"}, False, 400, "invalid_scope"),
        ({"audience": "https://elsewhere.example.com"}, False, 400, "invalid_target"),
        ({"client_secret": "also-in-body"}, False, 400, "invalid_request"),
    ],
)
def test_refusals_are_the_flask_views_answers(
    app: Flask,
    svc: Service,
    flask_views: list[str],
    params: dict[str, str],
    wrong_key: bool,
    status: int,
    error: str,
) -> None:
    flipped = svc.key[:-1] + ("A" if svc.key[-1] != "A" else "B")
    headers = basic(svc.client_id, flipped if wrong_key else svc.key)
    served, view = both(app, data={**CC, **params}, headers=headers)
    assert_error(served, status, error)
    assert served.get_json() == view.get_json()
    assert header_shape(served) == header_shape(view)
    assert "/token" in flask_views  # the lane handed the request over


def test_other_grants_reach_the_view_with_their_body_intact(app: Flask, svc: Service, flask_views: list[str]) -> None:
    response = Client(app).post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "unknown"},
        headers=basic(svc.client_id, svc.key),
    )
    body = assert_error(response, 400, "invalid_grant")
    assert "refresh token" in body["error_description"]  # the view read the replayed form, refresh_token included
    assert flask_views == ["/token"]


@pytest.mark.parametrize(
    "shape",
    [
        {"query_string": "grant_type=client_credentials"},
        {"headers": {"Origin": "https://app.example.com"}},
        {"content_type": "application/json", "data": '{"grant_type": "client_credentials"}'},
    ],
    ids=["query-string", "origin", "json-body"],
)
def test_requests_outside_the_lane_shape_go_to_the_view(
    app: Flask, svc: Service, flask_views: list[str], shape: dict[str, Any]
) -> None:
    headers = {**basic(svc.client_id, svc.key), **shape.pop("headers", {})}
    request: dict[str, Any] = {"data": CC, **shape}
    Client(app).post("/token", headers=headers, **request)
    assert flask_views == ["/token"]


def test_an_oversized_body_is_refused_by_the_view_with_413(app: Flask, svc: Service) -> None:
    body = "grant_type=client_credentials&pad=" + "a" * (64 * 1024)
    response = Client(app).post(
        "/token",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=basic(svc.client_id, svc.key),
    )
    assert_error(response, 413, "invalid_request")


def test_a_body_without_content_length_goes_to_the_view(app: Flask, svc: Service, flask_views: list[str]) -> None:
    """A chunked upload (no ``Content-Length``): the lane never reads a body of unknown length."""
    statuses = raw_token_request(app, svc, CONTENT_LENGTH=None, **{"wsgi.input_terminated": True})
    assert flask_views == ["/token"]
    assert statuses == ["200 OK"]


def test_default_audience_is_the_same_on_both_lanes(app: Flask, svc: Service) -> None:
    served, view = both(app, data=CC, headers=basic(svc.client_id, svc.key))
    for response in (served, view):
        claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
        assert claims["aud"] == API


@pytest.mark.parametrize("length", ["²⁹", "+29", " 29", "29 ", "0x1d", "1" * 12])
def test_an_odd_content_length_goes_to_the_view(app: Flask, svc: Service, flask_views: list[str], length: str) -> None:
    """Only plain ASCII digits are read as a length by the lane; anything else is Werkzeug's to judge."""
    statuses = raw_token_request(app, svc, CONTENT_LENGTH=length)
    assert flask_views == ["/token"]
    assert statuses and not statuses[0].startswith("5")


def test_a_request_id_with_a_trailing_newline_is_replaced(app: Flask, svc: Service) -> None:
    environ = create_environ("/token", method="POST", data=CC, headers=basic(svc.client_id, svc.key))
    environ["HTTP_X_REQUEST_ID"] = "abc\n"  # set directly: the test client refuses such a header
    answer: list[Any] = []
    b"".join(app(environ, lambda status, headers, _exc=None: answer.append((status, dict(headers)))))
    status, headers = answer[0]
    assert status == "200 OK"
    assert headers["X-Request-ID"] != "abc\n"
