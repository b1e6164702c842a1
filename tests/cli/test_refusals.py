"""Bad input to every command (SPEC §4): a non-zero exit, one `error:` line on stderr, and nothing changed.

Each case runs against the same small installation; the whole database and keyring are compared before and after.
Click's own usage errors (a malformed option value) exit 2 with click's message; for those the test asserts only
the exit code and that nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.cli.support import assert_one_error_line, ok_json

LONG_URI = "https://app.example.com/" + "a" * 3000


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    says: str = ""  # a fragment of the error line; empty for click usage errors
    stdin: str | None = None

    @property
    def usage_error(self) -> bool:
        return not self.says


def error(*args: str, says: str, stdin: str | None = None) -> Case:
    return Case(args, says, stdin)


def usage(*args: str) -> Case:
    return Case(args)


def create_web(*args: str) -> tuple[str, ...]:
    return ("clients", "create", "--name", "web", *args)


CASES = {
    # unknown things
    "clients-show-unknown-client": error("clients", "show", "no-such-client", says="no client 'no-such-client'"),
    "clients-update-unknown-client": error("clients", "update", "no-such-client", "--name", "x", says="no client"),
    "clients-delete-unknown-client": error("clients", "delete", "no-such-client", says="no client"),
    "clients-show-overlong-client-id": error("clients", "show", "x" * 5000, says="no client"),
    "api-keys-create-unknown-client": error("api-keys", "create", "no-such-client", says="no client"),
    "api-keys-list-unknown-client": error("api-keys", "list", "no-such-client", says="no client"),
    "api-keys-create-given-a-key-id": error("api-keys", "create", "{live}", says="no client"),
    "api-keys-create-public-client": error("api-keys", "create", "{spa}", says="is public"),
    "api-keys-revoke-unknown-key": error("api-keys", "revoke", "0123456789abcdef", says="no API key"),
    "api-keys-revoke-already-revoked": error("api-keys", "revoke", "{revoked}", says="already revoked"),
    "users-show-unknown": error("users", "show", "nobody", says="no user 'nobody'"),
    "users-disable-unknown": error("users", "disable", "nobody", says="no user"),
    "users-enable-unknown": error("users", "enable", "nobody", says="no user"),
    "users-delete-unknown": error("users", "delete", "nobody", says="no user"),
    "users-set-password-unknown": error(
        "users", "set-password", "nobody", "--password-stdin", says="no user", stdin="x\n"
    ),
    "keys-retire-unknown-kid": error("keys", "retire", "no-such-kid", says="no key with kid"),
    "db-downgrade-unknown-revision": error("db", "downgrade", "deadbeef", says="unknown revision 'deadbeef'"),
    "db-downgrade-too-far": error("db", "downgrade", "-5", says="Relative revision -5"),
    "db-upgrade-unknown-revision": error("db", "upgrade", "deadbeef", says="deadbeef"),
    # redirect URIs
    "redirect-uri-not-a-uri": error(*create_web("--redirect-uri", "not a uri"), says="is not a valid URI"),
    "redirect-uri-relative": error(*create_web("--redirect-uri", "/cb"), says="is not an absolute URI"),
    "redirect-uri-no-host": error(*create_web("--redirect-uri", "https://"), says="has no host"),
    "redirect-uri-fragment": error(*create_web("--redirect-uri", "https://app.example.com/cb#x"), says="fragment"),
    "redirect-uri-empty-fragment": error(*create_web("--redirect-uri", "https://app.example.com/cb#"), says="fragment"),
    "redirect-uri-3000-chars": error(*create_web("--redirect-uri", LONG_URI), says="is not a valid URI"),
    "redirect-uri-bad-port": error(*create_web("--redirect-uri", "https://app.example.com:99999/cb"), says="valid URI"),
    "redirect-uri-newline": error(*create_web("--redirect-uri", "https://app.example.com/cb\nx"), says="valid URI"),
    "redirect-uri-http-non-loopback": error(*create_web("--redirect-uri", "http://example.com/cb"), says="loopback"),
    "redirect-uri-http-loopback-lookalike": error(
        *create_web("--redirect-uri", "http://127.0.0.1.example.com/cb"), says="loopback"
    ),
    "redirect-uri-http-userinfo-trick": error(*create_web("--redirect-uri", "http://127.0.0.1@evil.com/"), says="http"),
    "redirect-uri-javascript": error(*create_web("--redirect-uri", "javascript:alert(1)"), says="must use https"),
    "post-logout-uri-http-non-loopback": error(
        *create_web("--public", "--redirect-uri", "https://app.example.com/cb"),
        "--post-logout-redirect-uri",
        "http://example.com/bye",
        says="post-logout redirect URI",
    ),
    "update-redirect-uri-http-non-loopback": error(
        "clients", "update", "{spa}", "--redirect-uri", "http://example.com/cb", says="loopback"
    ),
    "logo-uri-http-non-loopback": error(*create_web("--logo-uri", "http://example.com/logo.png"), says="loopback"),
    "logo-uri-javascript": error(*create_web("--logo-uri", "javascript:alert(1)"), says="must be an https URL"),
    "logo-uri-data": error(*create_web("--logo-uri", "data:image/png;base64,AAAA"), says="must be an https URL"),
    "logo-uri-userinfo": error(*create_web("--logo-uri", "https://a@evil.example/x.png"), says="user information"),
    "logo-uri-idn-host": error(*create_web("--logo-uri", "https://bücher.example/l.png"), says="plain ASCII host"),
    "logo-uri-underscore-host": error(*create_web("--logo-uri", "https://a_b.example/l.png"), says="plain ASCII"),
    "logo-uri-wildcard-host": error(*create_web("--logo-uri", "https://*.example.com/l.png"), says="plain ASCII"),
    "logo-uri-fragment": error(*create_web("--logo-uri", "https://app.example.com/l.png#x"), says="fragment"),
    "update-logo-uri-relative": error("clients", "update", "{spa}", "--logo-uri", "/logo.png", says="absolute URI"),
    "audience-not-absolute": error("clients", "create", "--name", "svc", "--audience", "api", says="absolute URI"),
    # grants and authentication
    "public-client-credentials": error(
        *create_web("--public", "--redirect-uri", "https://app.example.com/cb", "--grant-type", "client_credentials"),
        says="public client may use only",
    ),
    "update-public-to-client-credentials": error(
        "clients", "update", "{spa}", "--grant-type", "client_credentials", says="public client may use only"
    ),
    "update-confidential-to-public-keeping-client-credentials": error(
        "clients", "update", "{svc}", "--public", says="public client may use only"
    ),
    "unknown-grant-type": error(*create_web("--grant-type", "password"), says="unknown grant type 'password'"),
    "implicit-grant-type": error(*create_web("--grant-type", "implicit"), says="unknown grant type"),
    "code-flow-without-redirect-uri": error(*create_web("--grant-type", "authorization_code"), says="--redirect-uri"),
    "public-without-redirect-uri": error(*create_web("--public"), says="--redirect-uri"),
    "update-code-flow-without-redirect-uri": error(
        "clients", "update", "{svc}", "--grant-type", "authorization_code", says="--redirect-uri"
    ),
    "confidential-auth-method-none": error(*create_web("--token-endpoint-auth-method", "none"), says="--public"),
    "unknown-auth-method": error(*create_web("--token-endpoint-auth-method", "client_secret_jwt"), says="auth method"),
    "public-with-auth-method": error(
        *create_web(
            "--public", "--redirect-uri", "https://a.example/cb", "--token-endpoint-auth-method", "private_key_jwt"
        ),
        says="public client has no secret",
    ),
    "private-key-jwt-without-jwks": error(*create_web("--token-endpoint-auth-method", "private_key_jwt"), says="jwks"),
    "jwks-uri-http": error(
        *create_web("--token-endpoint-auth-method", "private_key_jwt", "--jwks-uri", "http://a.example/jwks"),
        says="https",
    ),
    "jwks-file-missing": error(*create_web("--jwks-file", "/no/such/jwks.json"), says="cannot read JWKS file"),
    "bad-scope-token": error(*create_web("--scope", 'openid "quoted"'), says="not a valid scope token"),
    "empty-client-name": error("clients", "create", "--name", " ", says="client name"),
    "client-name-with-newline": error("clients", "create", "--name", "a\nb", says="client name"),
    "missing-client-name": usage("clients", "create"),
    "update-misspelt-option": usage("clients", "update", "{svc}", "--nmae", "x"),
    "show-extra-argument": usage("users", "show", "alice", "bob"),
    # access-token TTL
    "ttl-zero": usage(*create_web("--access-token-ttl", "0")),
    "ttl-negative": usage(*create_web("--access-token-ttl", "-60")),
    "ttl-not-a-number": usage(*create_web("--access-token-ttl", "ten")),
    "ttl-huge": error(*create_web("--access-token-ttl", str(10**20)), says="access-token TTL"),
    "ttl-over-a-day": error(*create_web("--access-token-ttl", "86401"), says="access-token TTL"),
    "update-ttl-huge": error("clients", "update", "{svc}", "--access-token-ttl", "99999999", says="access-token TTL"),
    # API key expiry
    "expires-in-garbage": usage("api-keys", "create", "{svc}", "--expires-in", "soon"),
    "expires-in-bad-unit": usage("api-keys", "create", "{svc}", "--expires-in", "90y"),
    "expires-in-zero": usage("api-keys", "create", "{svc}", "--expires-in", "0"),
    "expires-in-negative": usage("api-keys", "create", "{svc}", "--expires-in", "-5d"),
    "expires-in-beyond-datetime": usage("api-keys", "create", "{svc}", "--expires-in", "999999999999d"),
    "api-key-name-with-newline": error("api-keys", "create", "{svc}", "--name", "a\nb", says="API key name"),
    "audit-since-garbage": usage("audit", "tail", "--since", "yesterday"),
    "audit-since-beyond-datetime": usage("audit", "tail", "--since", "999999999999d"),
    # users
    "duplicate-username": error("users", "create", "--username", "alice", says="is taken", stdin="pw\n"),
    "duplicate-username-other-case": error("users", "create", "--username", "ALICE", says="is taken", stdin="pw\n"),
    "duplicate-username-fullwidth": error(
        "users", "create", "--username", "\uff41\uff4c\uff49\uff43\uff45", says="'alice' is taken", stdin="pw\n"
    ),
    "duplicate-username-case-and-accent": error(
        "users", "create", "--username", "\u00e4LICE", says="is taken", stdin="pw\n"
    ),
    "duplicate-username-decomposed": error(
        "users", "create", "--username", "A\u0308lice", says="'\u00e4lice' is taken", stdin="pw\n"
    ),
    "empty-username": error("users", "create", "--username", "", says="username", stdin="pw\n"),
    "username-with-space": error("users", "create", "--username", "al ice", says="spaces", stdin="pw\n"),
    "username-with-control": error("users", "create", "--username", "al\u200bice", says="control", stdin="pw\n"),
    "email-without-at": error("users", "create", "--username", "bob", "--email", "nope", says="email", stdin="pw\n"),
    "email-without-local-part": error(
        "users", "create", "--username", "bob", "--email", "@example.com", says="email", stdin="pw\n"
    ),
    "email-with-space": error(
        "users", "create", "--username", "bob", "--email", "b ob@example.com", says="email", stdin="pw\n"
    ),
    "email-without-domain-dot": error(
        "users", "create", "--username", "bob", "--email", "bob@localhost", says="email", stdin="pw\n"
    ),
    "email-with-control": error(
        "users", "create", "--username", "bob", "--email", "bob\x07@example.com", says="email", stdin="pw\n"
    ),
    "email-too-long": error(
        "users", "create", "--username", "bob", "--email", "b" * 320 + "@example.com", says="email", stdin="pw\n"
    ),
    "name-with-newline": error("users", "create", "--username", "bob", "--name", "Bob\nB", says="name", stdin="pw\n"),
    "empty-password": error("users", "create", "--username", "bob", "--password-stdin", says="password", stdin="\n"),
    "password-too-long": error(
        "users", "create", "--username", "bob", "--password-stdin", says="password", stdin="x" * 1025 + "\n"
    ),
    "set-password-without-password": error("users", "set-password", "alice", says="no password given"),
    "set-password-empty": error("users", "set-password", "alice", "--password-stdin", says="password", stdin="\n"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_one_line_and_changes_nothing(cli, installation, state, case):
    args = [arg.format(**installation) for arg in case.args]
    before = state()

    result = cli(*args, input=case.stdin)

    if case.usage_error:
        assert result.exit_code == 2, result.output
    else:
        assert_one_error_line(result)
        assert case.says in result.stderr
    assert "Traceback" not in result.output
    assert state() == before


def test_the_state_comparison_sees_a_change_to_any_table_or_key(cli, installation, state):
    before = state()
    ok_json(cli("users", "disable", "alice", "--json"))
    assert state()["tables"] != before["tables"]

    before = state()
    next_kid = next(k["kid"] for k in ok_json(cli("keys", "list", "--json")) if k["state"] == "next")
    ok_json(cli("keys", "retire", next_kid, "--json"))
    assert state()["keys"] != before["keys"]
