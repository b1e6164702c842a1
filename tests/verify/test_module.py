"""``idp.verify`` as a resource server meets it: its imports, the ``Authorization`` header, the challenges.

No server needed: these pin RFC 6750 §2.1 (the header) and §3 (the ``WWW-Authenticate`` values), and that the
module imports nothing from the server side (SPEC §11).
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from idp.verify import InsufficientScope, InvalidToken, MissingToken, VerificationError, bearer_token
from tests.conftest import REPO


def test_importing_idp_verify_loads_no_server_and_no_web_framework() -> None:
    probe = (
        "import sys, idp.verify\n"
        "heavy = {'flask', 'werkzeug', 'sqlalchemy', 'authlib', 'joserfc', 'fastapi', 'starlette'}\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('idp.')]\n"
        "print(sorted(set(loaded) - {'idp.verify'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["verify.py", "verify_flask.py", "verify_fastapi.py"])
def test_the_verifier_modules_import_only_idp_verify_from_idp(module: str) -> None:
    tree = ast.parse((REPO / "idp" / module).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name.split(".")[0] == "idp"} <= {"idp.verify"}


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER  a-b_c~+/==", "a-b_c~+/==")],
)
def test_a_bearer_header_yields_its_token(header: str, token: str) -> None:
    """RFC 6750 §2.1; the scheme is case-insensitive (RFC 9110 §11.1)."""
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearerabc", "Token abc"])
def test_no_bearer_header_is_a_missing_token(header: str | None) -> None:
    with pytest.raises(MissingToken) as caught:
        bearer_token(header)
    assert caught.value.status_code == 401
    assert caught.value.www_authenticate() == "Bearer"  # RFC 6750 §3.1: no error code without a token
    assert caught.value.www_authenticate(realm="items") == 'Bearer realm="items"'


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", 'Bearer "abc"', "Bearer a,b"])
def test_a_malformed_bearer_header_is_an_invalid_token(header: str) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_challenges_name_the_error_and_keep_to_the_allowed_characters() -> None:
    invalid = InvalidToken('bad "quoted" \\ value\n')
    assert invalid.www_authenticate(realm="api") == (
        'Bearer realm="api", error="invalid_token", error_description="bad quoted  value"'
    )
    scope = InsufficientScope("needs more", ["items:read", "items:write"])
    assert scope.status_code == 403
    assert scope.www_authenticate() == (
        'Bearer error="insufficient_scope", error_description="needs more", scope="items:read items:write"'
    )
    assert all(isinstance(e, VerificationError) for e in (invalid, scope, MissingToken("x")))
