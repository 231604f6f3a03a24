"""The pure parts of tickerplant.identity: token format and hashing, roles, user names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickerplant.identity import (
    InvalidUserNameError,
    Role,
    UnknownRoleError,
    UnknownUserError,
    UserExistsError,
    display_prefix,
    hash_token,
    is_well_formed,
    new_token,
    validate_user_name,
)


def test_a_new_token_is_tp_underscore_and_43_url_safe_characters() -> None:
    """Scenario: issue a token. Outcome: 'tp_' + 43 of [A-Za-z0-9_-] (32 random bytes)."""
    token = new_token()

    assert re.fullmatch(r"tp_[A-Za-z0-9_-]{43}", token)
    assert len(token) == 46
    assert is_well_formed(token)


def test_new_tokens_do_not_repeat() -> None:
    """Scenario: issue 1000 tokens. Outcome: 1000 distinct values."""
    assert len({new_token() for _ in range(1000)}) == 1000


def test_hash_token_is_the_sha256_digest_of_the_utf8_token() -> None:
    """Scenario: a fixed token. Outcome: its known 32-byte SHA-256."""
    assert hash_token("tp_example") == bytes.fromhex(
        "16a944ab05e943efb582d7dedf7646db7fe63b957deca3cc3aafbec27d91a743"
    )


@given(st.text())
def test_any_string_hashes_to_32_bytes(text: str) -> None:
    """Scenario: arbitrary text (as presented by a client). Outcome: a 32-byte digest."""
    assert len(hash_token(text)) == 32


def test_display_prefix_is_tp_underscore_and_the_next_8_characters() -> None:
    """Scenario: a token. Outcome: its first 11 characters."""
    token = "tp_" + "abcdefgh" + "x" * 35

    assert display_prefix(token) == "tp_abcdefgh"


@pytest.mark.parametrize(
    "candidate",
    ["", "tp_", "tp_" + "a" * 42, "tp_" + "a" * 44, "xx_" + "a" * 43, "tp_" + "a" * 42 + "+"],
)
def test_strings_not_shaped_like_tokens_are_not_well_formed(candidate: str) -> None:
    """Scenario: wrong prefix, length or alphabet. Outcome: not well formed."""
    assert not is_well_formed(candidate)


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("trader", Role.TRADER),
        ("Quant", Role.QUANT),
        (" COMPLIANCE ", Role.COMPLIANCE),
        ("admin", Role.ADMIN),
    ],
)
def test_role_parse_accepts_role_names_regardless_of_case_and_blanks(text: str, role: Role) -> None:
    """Scenario: a role name as typed on the CLI. Outcome: the Role."""
    assert Role.parse(text) is role


def test_an_unknown_role_is_refused_listing_the_accepted_roles() -> None:
    """Scenario: parse 'boss'. Outcome: UnknownRoleError naming it and the four roles."""
    with pytest.raises(UnknownRoleError) as caught:
        Role.parse("boss")

    assert str(caught.value) == (
        "unknown role 'boss': expected one of trader, quant, compliance, admin"
    )
    assert caught.value.role == "boss"
    assert caught.value.accepted == ("trader", "quant", "compliance", "admin")


def test_role_values_are_the_strings_stored_in_the_database() -> None:
    """Scenario: the Role enum. Outcome: exactly the four values the users.role CHECK allows."""
    assert [role.value for role in Role] == ["trader", "quant", "compliance", "admin"]


@pytest.mark.parametrize("name", ["alice", "Bob.Smith", "ops+1@example.com", "a" * 64, "x-1_2"])
def test_acceptable_user_names_are_returned_unchanged(name: str) -> None:
    """Scenario: names made of letters, digits and . _ @ + -. Outcome: accepted as is."""
    assert validate_user_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "invalid user name '': must be 1 to 64 characters long"),
        ("a" * 65, f"invalid user name '{'a' * 65}': must be 1 to 64 characters long"),
        (
            "bob smith",
            "invalid user name 'bob smith': "
            "use letters, digits and . _ @ + - only, starting with a letter or digit",
        ),
        (
            ".hidden",
            "invalid user name '.hidden': "
            "use letters, digits and . _ @ + - only, starting with a letter or digit",
        ),
    ],
)
def test_unacceptable_user_names_are_refused_saying_why(name: str, message: str) -> None:
    """Scenario: empty, too long, a blank, a leading dot. Outcome: InvalidUserNameError."""
    with pytest.raises(InvalidUserNameError) as caught:
        validate_user_name(name)

    assert str(caught.value) == message


def test_user_errors_name_the_user() -> None:
    """Scenario: the errors for a taken and a missing name. Outcome: messages naming it."""
    assert str(UserExistsError("alice")) == "user 'alice' already exists"
    assert str(UnknownUserError("carol")) == "no user named 'carol'"
