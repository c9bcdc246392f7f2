"""``API_TOKEN``: a bearer token every request needs, except the load balancer's probes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

import falcon

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
"""Paths a load balancer probes without credentials."""


class BearerTokenAuth:
    """Falcon middleware: 401 unless the request carries ``Authorization: Bearer <token>``.

    It runs before routing, so an unknown route, a wrong method or an OPTIONS request answers 401
    too: a client without the token learns nothing about which routes exist.
    """

    def __init__(self, token: str, *, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._open_paths = open_paths
        # The bytes a client sends: the environment decoded them as UTF-8 (surrogateescape).
        # Kept as a digest, and what clients present is digested too, so the comparison takes
        # the same time whatever the length of a guess: not even the token's length leaks.
        self._digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in self._open_paths:
            return
        # WSGI hands headers over as latin-1 strings; encoding them back gives the bytes sent.
        scheme, _, credentials = (req.auth or "").partition(" ")
        try:
            presented = credentials.encode("latin-1")
        except UnicodeEncodeError:
            presented = b""
        # The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
        digest = hashlib.sha256(presented).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, self._digest):
            raise falcon.HTTPUnauthorized(description="unauthorized", challenges=["Bearer"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=<hidden>)"
