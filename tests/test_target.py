"""Targets: checked and canonicalized on intake, allowed only under TARGET_ALLOW, kept in the
store whole, shown with their secrets hidden."""

from __future__ import annotations

import logging

import msgspec
import pytest

from actors.target import (
    MAX_HEADERS,
    MAX_URL_CHARS,
    InvalidTarget,
    Target,
    TargetBody,
    decode_stored,
    decode_target,
    describe_target_error,
    encode_stored,
    redacted,
)

SECRET = "Bearer s3cret-t0ken"
USER_INFO = "target.url must not carry user info (user:pass@)"
UNSAFE = "target.url must not contain spaces or control characters"
URL_RULE = f"target.url must be a string of 1 to {MAX_URL_CHARS} characters"
METHOD_RULE = "target.method must be one of GET, POST, PUT, PATCH, DELETE"
HEADERS_RULE = f"target.headers must be an object of at most {MAX_HEADERS} string values"


def target(**fields: object) -> Target:
    return decode_target(msgspec.json.encode({"url": "https://billing.internal/hooks", **fields}))


def refusal(data: object) -> str:
    with pytest.raises(InvalidTarget) as caught:
        decode_target(msgspec.json.encode(data))
    return str(caught.value)


# Decoding and checking


def test_a_full_target_is_kept_with_its_headers_in_order() -> None:
    kept = target(
        url="https://billing.internal/hooks/invoice",
        method="PUT",
        headers={"Authorization": SECRET, "X-Tenant": "7"},
    )

    assert kept == Target(
        url="https://billing.internal/hooks/invoice",
        method="PUT",
        headers=(("Authorization", SECRET), ("X-Tenant", "7")),
    )


def test_method_defaults_to_post_and_headers_to_none() -> None:
    kept = target()

    assert kept.method == "POST"
    assert kept.headers == ()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://billing.internal/x", "target.url must be an http or https URL"),
        ("billing.internal/x", "target.url must be an http or https URL"),
        ("javascript:alert(1)", "target.url must be an http or https URL"),
        ("https://user:pass@billing.internal/", USER_INFO),
        ("https://billing.internal@evil.example/", USER_INFO),
        ("https://billing.internal\\@evil.example/", USER_INFO),
        ("https:///hooks", "target.url must name a host"),
        ("https://billing.internal:99999/", "target.url has an invalid port"),
        ("https://billing.internal:0/", "target.url has an invalid port"),
        ("https://billing.internal:x/", "target.url has an invalid port"),
        ("https://billing internal/", UNSAFE),
        ("https://billing.internal/\nHost: evil", UNSAFE),
        ("https://billing.internal/%zz", "target.url has a malformed percent-escape"),
        ("https://[::1/", "target.url is not a valid URL"),
        ("https://[fe80::1%25eth0]/", "target.url must not carry an IPv6 zone id"),
        ("https://bill%69ng.internal/", "target.url has an invalid host name"),
        ("https://billing..internal/", "target.url has an invalid host name"),
    ],
)
def test_a_url_that_is_not_a_plain_http_url_is_refused(url: str, message: str) -> None:
    assert refusal({"url": url}) == message


def test_a_url_of_2048_characters_is_accepted_and_one_more_refused() -> None:
    base = "https://billing.internal/"
    assert len(target(url=base + "a" * (MAX_URL_CHARS - len(base))).url) == MAX_URL_CHARS

    message = refusal({"url": base + "a" * (MAX_URL_CHARS - len(base) + 1)})

    assert message == f"target.url must be a string of 1 to {MAX_URL_CHARS} characters"


def test_a_url_that_grows_past_the_limit_when_percent_encoded_is_refused() -> None:
    message = refusal({"url": "https://billing.internal/" + "ü" * 1000})

    assert message == "target.url must be at most 2048 characters once percent-encoded"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "target.url is required"),
        ({"url": 5}, URL_RULE),
        ({"url": ""}, URL_RULE),
        (
            {"url": "https://a.example/", "method": "post"},
            METHOD_RULE,
        ),
        (
            {"url": "https://a.example/", "method": "HEAD"},
            METHOD_RULE,
        ),
        (
            {"url": "https://a.example/", "headers": ["X-A"]},
            HEADERS_RULE,
        ),
        (
            {"url": "https://a.example/", "headers": {"X-A": 1}},
            HEADERS_RULE,
        ),
        (
            {"url": "https://a.example/", "headers": {f"X-{i}": "v" for i in range(51)}},
            HEADERS_RULE,
        ),
        ({"url": "https://a.example/", "timeout": 5}, "target has no field 'timeout'"),
        ([], "target must be a JSON object"),
        ("https://a.example/", "target must be a JSON object"),
    ],
)
def test_a_wrong_field_or_type_is_refused_naming_it(data: object, message: str) -> None:
    assert refusal(data) == message


def test_fifty_headers_are_accepted() -> None:
    kept = target(headers={f"X-{i}": "v" for i in range(MAX_HEADERS)})

    assert len(kept.headers) == MAX_HEADERS


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X Bad": "v"}, "target.headers: 'X Bad' is not a valid header name"),
        ({"": "v"}, "target.headers: '' is not a valid header name"),
        ({"X-Ünicode": "v"}, "target.headers: 'X-Ünicode' is not a valid header name"),
        ({"Task-Signature": "t=1,v1=00"}, "target.headers: Task-Signature is set by the service"),
        ({"task-id": "other"}, "target.headers: task-id is set by the service"),
        ({"Host": "evil.example"}, "target.headers: Host is set by the service"),
        ({"Content-Length": "0"}, "target.headers: Content-Length is set by the service"),
        ({"X-A": "1", "x-a": "2"}, "target.headers: x-a is given twice"),
    ],
)
def test_a_header_name_that_is_invalid_reserved_or_repeated_is_refused(
    headers: dict[str, str], message: str
) -> None:
    assert refusal({"url": "https://a.example/", "headers": headers}) == message


@pytest.mark.parametrize(
    "value",
    [f"{SECRET}\r\nX-Injected: 1", f"{SECRET}\n", f"{SECRET}\x00", f"{SECRET}é", "x" * 8193],
)
def test_a_header_value_that_could_break_the_request_is_refused_without_showing_it(
    value: str,
) -> None:
    message = refusal({"url": "https://a.example/", "headers": {"Authorization": value}})

    assert message == (
        "target.headers: the value of Authorization must be printable ASCII of at most "
        "8192 characters"
    )
    assert SECRET not in message


# Inside an enqueue body


class Enqueue(msgspec.Struct, forbid_unknown_fields=True):
    """Stands in for api/schema.py's EnqueueRequest once it gains its ``target`` field."""

    id: str
    target: TargetBody | None = None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"id": "a", "target": {"url": 5}}', URL_RULE),
        (b'{"id": "a", "target": {"url": "x", "method": 1}}', METHOD_RULE),
        (b'{"id": "a", "target": {"url": "x", "headers": {"A": 1}}}', HEADERS_RULE),
        (b'{"id": "a", "target": {"url": "x", "body": 1}}', "target has no field 'body'"),
        (b'{"id": "a", "target": {}}', "target.url is required"),
        (b'{"id": "a", "target": "https://x"}', "target must be a JSON object"),
    ],
)
def test_an_error_inside_a_task_s_target_is_described_as_the_target_s(
    body: bytes, message: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=Enqueue)

    assert describe_target_error(str(caught.value)) == message


def test_an_error_inside_a_batch_element_s_target_is_described_as_the_target_s() -> None:
    body = b'[{"id": "a"}, {"id": "b", "target": {"url": "x", "method": "TRACE"}}]'
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=list[Enqueue])

    assert describe_target_error(str(caught.value)) == (METHOD_RULE)


@pytest.mark.parametrize(
    "body", [b'{"id": 5}', b'{"id": "a", "other": 1}', b'{"target": null}', b"[]"]
)
def test_an_error_elsewhere_in_the_body_is_left_to_the_body_s_own_rules(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=Enqueue)

    assert describe_target_error(str(caught.value)) is None


# The store and answers


def test_a_target_reads_back_from_the_store_as_it_was_kept() -> None:
    kept = target(method="DELETE", headers={"Authorization": SECRET, "X-B": ""})

    stored = encode_stored(kept)

    assert msgspec.json.decode(stored) == {
        "url": "https://billing.internal/hooks",
        "method": "DELETE",
        "headers": {"Authorization": SECRET, "X-B": ""},
    }
    assert decode_stored(stored) == kept


def test_a_stored_target_past_today_s_limits_still_reads_back() -> None:
    # Written when the limits were looser (or by hand): reading a task must not fail on it.
    stored = msgspec.json.encode(
        {
            "url": "https://billing.internal/" + "a" * MAX_URL_CHARS,
            "method": "POST",
            "headers": {f"X-{i}": "v" for i in range(MAX_HEADERS + 1)},
        }
    )

    kept = decode_stored(stored)

    assert len(kept.headers) == MAX_HEADERS + 1
    assert encode_stored(kept) == stored


def test_an_answer_shows_the_url_method_and_header_names_but_no_value() -> None:
    kept = target(headers={"Authorization": SECRET, "X-Tenant": "7"})

    shown = msgspec.json.encode(redacted(kept))

    assert msgspec.json.decode(shown) == {
        "url": "https://billing.internal/hooks",
        "method": "POST",
        "headers": {"Authorization": "***", "X-Tenant": "***"},
    }


def test_a_target_written_to_a_log_by_accident_shows_no_header_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Holder(msgspec.Struct, frozen=True):
        target: Target

    kept = target(headers={"Authorization": SECRET})
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("holding %r and %s", Holder(kept), kept)

    assert SECRET not in caplog.text
    assert "Authorization: ***" in caplog.text
    assert "https://billing.internal/hooks" in caplog.text


def test_a_target_cannot_be_changed_once_made() -> None:
    kept = target(headers={"Authorization": SECRET})

    with pytest.raises(AttributeError):
        kept.url = "https://evil.example/"  # type: ignore[misc]
    assert isinstance(kept.headers, tuple)
