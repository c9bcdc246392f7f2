"""Canonical URLs: one spelling per URL, and the HTTP client reads it as we do."""

from __future__ import annotations

import pytest

from actors.target_url import CanonicalUrl, UnreadableUrl, _check_client_agrees, canonicalize


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
    assert canonicalize(given).text == canonical
    assert canonicalize(canonical).text == canonical


def test_a_url_the_http_client_would_read_differently_is_refused() -> None:
    # No URL that reaches this check is known to trip it: it guards against the day urllib3's
    # parser and ours part ways. So it is tried with parts urllib3 would send re-encoded.
    parts = CanonicalUrl(scheme="https", host="billing.internal", port=443, path="/a b", query="")

    with pytest.raises(UnreadableUrl, match="is not a valid URL"):
        _check_client_agrees(parts)
    _check_client_agrees(parts._replace(path="/a%20b"))
