"""Checking the ``Authorization`` header of a request against a token, for the collector and ``serve``.

Comparisons are constant-time (``hmac.compare_digest``), so a wrong token's answer takes as long whatever part of
it was right. Header bytes that are not UTF-8 (servers keep them as surrogates) are a wrong token, not an error.
"""

from __future__ import annotations

import base64
import binascii
import hmac


def bearer(token: str) -> bytes:
    """The ``Authorization`` value that carries ``token``: ``Bearer <token>``."""
    return f"Bearer {token}".encode()


def authorized(header: str | None, expected: bytes | None) -> bool:
    """Whether an ``Authorization`` header is exactly ``expected`` (:func:`bearer`); False without a token to
    expect."""
    if expected is None or header is None:
        return False
    given = _bytes(header)
    return given is not None and hmac.compare_digest(given, expected)


def basic_password_is(header: str | None, token: str) -> bool:
    """Whether ``header`` is ``Basic`` credentials whose password is ``token`` (any user name): what a browser sends
    once a 401 answer asked it for Basic credentials, since a browser cannot be told to send a bearer token."""
    given = _bytes(header) if header is not None else None
    if given is None or not given.startswith(b"Basic "):
        return False
    try:
        credentials = base64.b64decode(given[len(b"Basic ") :], validate=True)
    except (binascii.Error, ValueError):
        return False
    _, colon, password = credentials.partition(b":")
    return bool(colon) and hmac.compare_digest(password, token.encode())


def _bytes(header: str) -> bytes | None:
    try:
        return header.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
