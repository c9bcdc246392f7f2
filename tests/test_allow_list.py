"""TARGET_ALLOW: a target is allowed only under an entry, compared as canonical URLs, never as
raw text."""

from __future__ import annotations

import pytest

from actors.allow_list import AllowList, InvalidAllowList
from actors.target_url import canonicalize

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
        url = canonicalize(given).text
        assert AllowList.parse(url).allows(url), url


def test_an_international_name_matches_in_either_spelling() -> None:
    unicode_entry = AllowList.parse("https://bücher.example/hooks")
    ascii_entry = AllowList.parse("https://xn--bcher-kva.example/hooks")

    for allow in (unicode_entry, ascii_entry):
        assert allow.allows("https://BÜCHER.example/hooks/a")
        assert allow.allows("https://xn--bcher-kva.example/hooks/a")
        assert not allow.allows("https://bucher.example/hooks/a")
