"""`idp audit tail` (SPEC §4, §10): the CLI's security events, named `subject.verb`, never with a secret."""

from __future__ import annotations

from tests.cli.support import API_KEY, ok_json

PASSWORD = "correct horse battery staple"


def test_tail_shows_what_the_cli_did_and_no_secret(cli):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    extra = ok_json(cli("api-keys", "create", svc["client_id"], "--name", "rotation", "--json"))
    ok_json(cli("api-keys", "revoke", extra["id"], "--json"))
    alice = ok_json(cli("users", "create", "--username", "alice", "--password-stdin", "--json", input=PASSWORD))

    result = cli("audit", "tail", "--json")
    events = ok_json(result)

    assert [e["event"] for e in events] == [
        "client.created",
        "api_key.created",
        "api_key.created",
        "api_key.revoked",
        "user.created",
    ]
    assert all(e["actor"] == "cli" and e["created_at"] for e in events)
    assert [e["client_id"] for e in events[:4]] == [svc["client_id"]] * 4
    assert events[1]["details"] == {"key_id": svc["api_key_id"], "prefix": f"idp_{svc['api_key_id']}"}
    assert events[2]["details"] == {"key_id": extra["id"], "prefix": extra["prefix"]}
    assert events[3]["details"] == {"key_id": extra["id"], "prefix": extra["prefix"]}
    assert events[4]["details"] == {"user_id": alice["id"]}
    for key in (svc["client_secret"], extra["key"]):
        assert API_KEY.match(key).group(2) not in result.stdout
    assert PASSWORD not in result.stdout


def test_tail_filters_by_event_and_age_and_limits(cli):
    svc = ok_json(cli("clients", "create", "--name", "svc", "--json"))
    ok_json(cli("api-keys", "revoke", svc["api_key_id"], "--json"))

    revoked = ok_json(cli("audit", "tail", "--event", "api_key.revoked", "--json"))
    assert [(e["event"], e["details"]["key_id"]) for e in revoked] == [("api_key.revoked", svc["api_key_id"])]
    assert len(ok_json(cli("audit", "tail", "--since", "1h", "--json"))) == 3
    assert [e["event"] for e in ok_json(cli("audit", "tail", "--limit", "2", "--json"))] == [
        "api_key.created",
        "api_key.revoked",
    ]
    assert ok_json(cli("audit", "tail", "--event", "user.created", "--json")) == []
