"""Task-Signature: one HMAC-SHA256 per key over the time, the task id and the exact body, and
the reference verifier receivers follow."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from actors.signing import (
    DEFAULT_TOLERANCE_S,
    MIN_KEY_CHARS,
    InvalidSigningKeys,
    parse_signing_keys,
    sign,
    signed_content,
    verify,
)

OLD = b"old-key-0123456789abcdef"
NEW = b"new-key-fedcba9876543210"
T = 1_700_000_000
BODY = b'{"invoice": 42}'


def test_the_signature_is_the_hmac_of_time_id_and_body_as_documented() -> None:
    expected = hmac.new(OLD, b'1700000000.task-1.{"invoice": 42}', hashlib.sha256).hexdigest()

    assert sign([OLD], T, "task-1", BODY) == f"t=1700000000,v1={expected}"


def test_each_key_adds_one_v1_in_the_order_given() -> None:
    header = sign([OLD, NEW], T, "task-1", BODY)

    t, first, second = header.split(",")
    assert t == "t=1700000000"
    assert first == "v1=" + hmac.new(OLD, signed_content(T, "task-1", BODY), "sha256").hexdigest()
    assert second == "v1=" + hmac.new(NEW, signed_content(T, "task-1", BODY), "sha256").hexdigest()


def test_an_empty_body_signs_the_prefix_alone() -> None:
    assert signed_content(T, "task-1", b"") == b"1700000000.task-1."


def test_a_non_ascii_task_id_is_signed_as_utf_8() -> None:
    assert signed_content(T, "tâche", b"x") == "1700000000.tâche.x".encode()


def test_signing_without_keys_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        sign([], T, "task-1", BODY)


@pytest.mark.parametrize("keys", [[OLD], [NEW], [NEW, OLD]])
def test_a_receiver_holding_either_key_verifies_a_two_key_signature(keys: list[bytes]) -> None:
    header = sign([OLD, NEW], T, "task-1", BODY)

    assert verify(header, keys, "task-1", BODY, now=T)


@pytest.mark.parametrize(
    ("task_id", "body", "keys"),
    [
        ("task-2", BODY, [OLD]),
        ("task-1", BODY + b" ", [OLD]),
        ("task-1", b'{"invoice":42}', [OLD]),
        ("task-1", BODY, [b"another-key-0123456789"]),
        ("task-1", BODY, []),
    ],
)
def test_another_id_body_or_key_does_not_verify(
    task_id: str, body: bytes, keys: list[bytes]
) -> None:
    header = sign([OLD], T, "task-1", BODY)

    assert not verify(header, keys, task_id, body, now=T)


def test_a_signature_verifies_within_the_tolerance_and_not_beyond() -> None:
    header = sign([OLD], T, "task-1", BODY)

    assert verify(header, [OLD], "task-1", BODY, now=T + DEFAULT_TOLERANCE_S)
    assert verify(header, [OLD], "task-1", BODY, now=T - DEFAULT_TOLERANCE_S)
    assert not verify(header, [OLD], "task-1", BODY, now=T + DEFAULT_TOLERANCE_S + 1)
    assert not verify(header, [OLD], "task-1", BODY, now=T + 10, tolerance_s=5)


def test_a_changed_time_does_not_verify() -> None:
    header = sign([OLD], T, "task-1", BODY).replace(f"t={T}", f"t={T + 1}")

    assert not verify(header, [OLD], "task-1", BODY, now=T)


def test_a_signature_scheme_the_verifier_does_not_know_is_skipped() -> None:
    header = sign([OLD], T, "task-1", BODY) + ",v2=abc"

    assert verify(header, [OLD], "task-1", BODY, now=T)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=1700000000",
        "v1=" + "0" * 64,
        "t=abc,v1=00",
        "t=-1700000000,v1=00",
        "t=\uff11\uff17,v1=00"  # fullwidth digits,
        "garbage",
        "t=1700000000,t=1700000000,v1=00",
    ],
)
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify(header, [OLD], "task-1", BODY, now=T)


def test_a_duplicated_time_does_not_verify_even_with_a_good_signature() -> None:
    good = sign([OLD], T, "task-1", BODY)

    assert not verify(f"t={T}," + good, [OLD], "task-1", BODY, now=T)


def test_keys_are_read_comma_separated_and_trimmed() -> None:
    assert parse_signing_keys(f" {OLD.decode()} ,{NEW.decode()}") == (OLD, NEW)


def test_no_keys_means_unsigned_deliveries() -> None:
    assert parse_signing_keys("") == ()
    assert parse_signing_keys("   ") == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short-secret", "key 1 is too short"),
        (f"{OLD.decode()},,{NEW.decode()}", "key 2 is empty"),
        (f"{OLD.decode()},", "key 2 is empty"),
    ],
)
def test_an_empty_or_short_key_is_refused_without_showing_any_key(value: str, message: str) -> None:
    with pytest.raises(InvalidSigningKeys) as caught:
        parse_signing_keys(value)

    text = str(caught.value)
    assert message in text
    assert f"at least {MIN_KEY_CHARS} characters" in text
    assert "short-secret" not in text
    assert OLD.decode() not in text
