"""Targets: checked and canonicalized on intake, allowed only under TARGET_ALLOW, kept in the
store whole, shown with their secrets hidden."""

from __future__ import annotations

import logging

import msgspec
import pytest

from actors.target import (
    MAX_HEADERS,
    MAX_URL_CHARS,
    AllowList,
    InvalidAllowList,
    InvalidTarget,
    Target,
    TargetBody,
    _check_client_agrees,
    _Parts,
    _Unreadable,
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
    ("given", "canonical"),
    [
        ("HTTPS://Billing.Internal:443/hooks", "https://billing.internal/hooks"),
        ("http://billing.internal:80", "http://billing.internal/"),
        ("https://billing.internal:8443/a/./b/../c", "https://billing.internal:8443/a/c"),
        ("https://billing.internal/hooks/%2e%2E/admin", "https://billing.internal/admin"),
        ("https://billing.internal/%7euser/%2f%5c", "https://billing.internal/~user/%2F%5C"),
        (
            "https://billing.internal/x?a=1&b=%c3%a4#fragment",
            "https://billing.internal/x?a=1&b=%C3%A4",
        ),
        ("https://bücher.example/ü?q=ä", "https://xn--bcher-kva.example/%C3%BC?q=%C3%A4"),
        ("https://[0:0::1]:8443/x", "https://[::1]:8443/x"),
        ("https://a\u3002example/x", "https://a.example/x"),
    ],
)
def test_a_url_is_kept_in_one_canonical_spelling(given: str, canonical: str) -> None:
    assert target(url=given).url == canonical
    assert target(url=canonical).url == canonical


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


def test_a_url_the_http_client_would_read_differently_is_refused() -> None:
    # No URL that reaches this check is known to trip it: it guards against the day urllib3's
    # parser and ours part ways. So it is tried with parts urllib3 would send re-encoded.
    parts = _Parts(scheme="https", host="billing.internal", port=443, path="/a b", query="")

    with pytest.raises(_Unreadable, match="is not a valid URL"):
        _check_client_agrees(parts)
    _check_client_agrees(parts._replace(path="/a%20b"))


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


# The allow list


ALLOW = AllowList.parse(
    "https://billing.internal/hooks, http://127.0.0.1:8080/, https://[::1]:8443/api/"
)


@pytest.mark.parametrize(
    "url",
    [
        "https://billing.internal/hooks",
        "https://billing.internal/hooks/",
        "https://billing.internal/hooks/invoice?x=1",
        "https://BILLING.INTERNAL:443/hooks/invoice",
        "HTTPS://billing.internal/hooks/./invoice",
        "https://billing.internal/hooks/a/../invoice",
        "https://billing.internal/%68ooks/invoice",
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:8080/anything/at/all",
        "https://[0::1]:8443/api/v1",
    ],
)
def test_a_url_under_an_entry_is_allowed(url: str) -> None:
    assert ALLOW.allows(url)


@pytest.mark.parametrize(
    "url",
    [
        # wrong scheme, host or port
        "http://billing.internal/hooks",
        "https://billing.internal:8443/hooks",
        "https://billing.internal.evil.example/hooks",
        "https://evil.example/hooks",
        "https://127.0.0.1:8080/",
        "http://127.0.0.1/",
        "http://localhost:8080/",
        # another spelling of an allowed host: names are compared, not resolved
        "https://billing.internal./hooks",
        "http://127.1:8080/",
        "http://2130706433:8080/",
        "http://0x7f.0.0.1:8080/",
        "http://[::ffff:127.0.0.1]:8080/",
        # an allowed host named as user info
        "https://billing.internal@evil.example/hooks",
        "https://billing.internal:443@evil.example/hooks",
        "https://user:pw@billing.internal/hooks",
        "https://evil.example\\@billing.internal/hooks",
        # out of the path
        "https://billing.internal/",
        "https://billing.internal/hooksmith",
        "https://billing.internal/HOOKS",
        "https://billing.internal/hooks/../admin",
        "https://billing.internal/hooks/%2e%2e/admin",
        "https://billing.internal/hooks/..%2fadmin",
        "https://billing.internal/hooks/..%5cadmin",
        "https://billing.internal/hooks\\..\\admin",
        "https://[::1]:8443/api",
        # not a URL at all
        "billing.internal/hooks",
        "https://billing.internal/hooks/\tx",
        "",
    ],
)
def test_a_url_outside_every_entry_is_not_allowed(url: str) -> None:
    assert not ALLOW.allows(url)


def test_an_entry_without_a_path_allows_its_whole_origin() -> None:
    allow = AllowList.parse("https://billing.internal")

    assert allow.allows("https://billing.internal/")
    assert allow.allows("https://billing.internal/x/%2F/y")
    assert not allow.allows("https://billing.internal:444/")


def test_an_empty_allow_list_allows_nothing() -> None:
    for value in ("", "  "):
        assert AllowList.parse(value).entries == ()
        assert not AllowList.parse(value).allows("https://billing.internal/hooks")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "https://a.example,ftp://b.example",
            "invalid TARGET_ALLOW entry 'ftp://b.example': must be an http or https URL",
        ),
        ("a.example", "invalid TARGET_ALLOW entry 'a.example': must be an http or https URL"),
        (
            "https://user@a.example",
            "invalid TARGET_ALLOW entry 'https://user@a.example': must not carry user info "
            "(user:pass@)",
        ),
        (
            "https://a.example/x?y=1",
            "invalid TARGET_ALLOW entry 'https://a.example/x?y=1': an entry is a URL prefix "
            "without a query or fragment",
        ),
        (
            "https://a.example:70000",
            "invalid TARGET_ALLOW entry 'https://a.example:70000': has an invalid port",
        ),
        (
            "https://a.example,,https://b.example",
            "invalid TARGET_ALLOW='https://a.example,,https://b.example': an empty entry "
            "(a comma too many?)",
        ),
    ],
)
def test_a_bad_allow_list_entry_is_named_in_the_error(value: str, message: str) -> None:
    with pytest.raises(InvalidAllowList) as caught:
        AllowList.parse(value)

    assert str(caught.value) == message


def test_every_canonical_target_url_is_allowed_by_an_entry_made_from_it() -> None:
    # The URL that is checked is the URL that is sent: a target's own canonical URL, taken
    # as an entry, must allow that same URL.
    for given in ("https://bücher.example/ü", "https://[::1]/a/b/", "http://h:81/%41%2F"):
        url = target(url=given).url
        assert AllowList.parse(url).allows(url), url
