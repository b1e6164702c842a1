"""`idp users create | list | show | disable | enable | set-password | delete` (SPEC §4, §10)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import update

from idp.extensions import db
from idp.models import User
from tests.cli.support import assert_one_error_line, fresh, ok_json

SHOWN = {"id", "username", "email", "name", "disabled", "created_at"}


def create(cli, username, password, *extra):
    return ok_json(cli("users", "create", "--username", username, "--password-stdin", *extra, "--json", input=password))


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ÄliCe", "älice"),
        ("A\u0308liCe", "älice"),  # decomposed: NFKC composes it
        ("\uff21\uff4c\uff49\uff23\uff45", "alice"),  # fullwidth letters
        ("Straße", "strasse"),  # full case folding, not lower()
        ("\u210c\u2160", "hi"),  # compatibility forms: black-letter H, roman numeral one
    ],
)
def test_username_is_nfkc_normalised_and_case_folded(cli, app, typed, stored):
    data = create(cli, typed, "s3cret\n")

    assert data["username"] == stored
    assert fresh(User, data["id"]).username == stored


def test_create_stores_an_argon2id_hash_of_the_password_from_stdin(cli, app):
    data = create(cli, "ÄliCe", "correct horse battery staple\n", "--email", "alice@example.com", "--name", "Alice A.")

    assert data == {"id": data["id"], "username": "älice", "email": "alice@example.com"}
    user = fresh(User, data["id"])
    assert (user.email, user.name, user.disabled) == ("alice@example.com", "Alice A.", False)
    assert user.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(user.password_hash, "correct horse battery staple")


# A CRLF line ending is tested in test_process.py: click's test runner turns it into LF before the command sees it.
@pytest.mark.parametrize("stdin", ["pa ss \nignored\n", "pa ss "], ids=["newline", "eof"])
def test_password_is_the_first_line_of_stdin_without_its_line_ending(cli, app, stdin):
    data = create(cli, "bob", stdin)

    assert PasswordHasher().verify(fresh(User, data["id"]).password_hash, "pa ss ")


def test_list_and_show_by_id_or_by_any_spelling_of_the_username(cli):
    alice = create(cli, "ÄliCe", "pw\n", "--email", "alice@example.com")
    bob = create(cli, "bob", "pw\n")

    listed = ok_json(cli("users", "list", "--json"))
    assert [u["id"] for u in listed] == [alice["id"], bob["id"]]
    assert all(set(u) == SHOWN for u in listed)
    assert "password" not in cli("users", "list", "--json").stdout

    for ref in (alice["id"], "älice", "ÄLICE", "A\u0308LICE"):
        shown = ok_json(cli("users", "show", ref, "--json"))
        assert shown == listed[0]
    assert shown["email"] == "alice@example.com" and shown["disabled"] is False


def test_disable_and_enable(cli, app):
    user = create(cli, "alice", "pw\n")

    disabled = ok_json(cli("users", "disable", "Alice", "--json"))
    assert (disabled["id"], disabled["disabled"]) == (user["id"], True)
    assert fresh(User, user["id"]).disabled is True

    enabled = ok_json(cli("users", "enable", user["id"], "--json"))
    assert enabled["disabled"] is False
    assert fresh(User, user["id"]).disabled is False


def test_set_password_replaces_the_hash(cli, app):
    user = create(cli, "alice", "old password\n")
    old_hash = fresh(User, user["id"]).password_hash

    shown = ok_json(cli("users", "set-password", "alice", "--password-stdin", "--json", input="new password\n"))

    assert shown["id"] == user["id"]
    new_hash = fresh(User, user["id"]).password_hash
    assert new_hash != old_hash and new_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(new_hash, "new password")
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(new_hash, "old password")


def test_delete_removes_the_user(cli, app):
    user = create(cli, "alice", "pw\n")
    other = create(cli, "bob", "pw\n")

    assert ok_json(cli("users", "delete", "ALICE", "--json")) == {"user": "ALICE", "deleted": True}

    assert fresh(User, user["id"]) is None
    assert fresh(User, other["id"]) is not None
    assert_one_error_line(cli("users", "show", user["id"]))


def test_a_user_id_starting_with_a_dash_is_taken_as_the_id(cli, app):
    # One generated id in 64 starts with "-"; click must not read it as an unknown option.
    user = create(cli, "alice", "pw\n")
    db.session.execute(update(User).where(User.id == user["id"]).values(id="-dashed_id"))
    db.session.commit()

    assert ok_json(cli("users", "show", "-dashed_id", "--json"))["username"] == "alice"
    assert ok_json(cli("users", "disable", "-dashed_id", "--json"))["disabled"] is True
    assert ok_json(cli("users", "enable", "-dashed_id", "--json"))["disabled"] is False
    assert ok_json(cli("users", "set-password", "-dashed_id", "--password-stdin", "--json", input="new\n"))
    assert ok_json(cli("users", "delete", "-dashed_id", "--json"))["deleted"] is True
    assert fresh(User, "-dashed_id") is None
