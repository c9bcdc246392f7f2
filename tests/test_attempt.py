"""The attempt contract's text rules: errors typed and capped, results encoded or dropped."""

from __future__ import annotations

import pytest

from actors.attempt import CUT_MARK, MAX_ERROR_CHARS, cap, describe_error, encode_result


class Unreadable(Exception):
    def __str__(self) -> str:
        raise SystemExit(1)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad input"), "ValueError: bad input"),
        (MemoryError(), "MemoryError"),
        (SystemExit(3), "SystemExit: 3"),
        (KeyError("k"), "KeyError: 'k'"),
        (Unreadable(), "Unreadable: (its message could not be read)"),
        (ValueError("\ud800 lone"), "ValueError: ? lone"),
    ],
)
def test_an_error_is_its_type_and_its_message(exc: BaseException, expected: str) -> None:
    assert describe_error(exc) == expected


def test_a_huge_message_is_cut_with_a_visible_mark() -> None:
    text = describe_error(RuntimeError("x" * 10_000_000))

    assert len(text) == MAX_ERROR_CHARS
    assert text.startswith("RuntimeError: xxx")
    assert text.endswith(CUT_MARK)


def test_text_at_the_limit_is_kept_whole() -> None:
    assert cap("y" * MAX_ERROR_CHARS) == "y" * MAX_ERROR_CHARS
    assert cap("y" * (MAX_ERROR_CHARS + 1)).endswith(CUT_MARK)


def test_a_result_is_encoded_as_json() -> None:
    assert encode_result({"n": [1, 2.5, "x"]}, 100) == (b'{"n":[1,2.5,"x"]}', None)


def test_none_is_no_result() -> None:
    assert encode_result(None, 100) == (None, None)


@pytest.mark.parametrize(
    ("value", "kind"), [(object(), "object"), ({"a": [1j]}, "complex"), ({1: object}, "type")]
)
def test_a_value_json_cannot_hold_is_dropped_naming_its_type(value: object, kind: str) -> None:
    result, why = encode_result(value, 100)

    assert result is None
    assert why == f"result dropped: not JSON-encodable ({kind})"


def test_a_result_over_the_limit_is_dropped_saying_its_size() -> None:
    assert encode_result("abcdefgh", 10) == (b'"abcdefgh"', None)
    assert encode_result("abcdefghi", 10) == (None, "result dropped: 11 bytes encoded, over 10")
