"""The token of the collector and ``serve``: where it is given (a flag or a variable, itself or a file holding
it), and checking the ``Authorization`` header of a request against it.

Comparisons are constant-time (``hmac.compare_digest``), so a wrong token's answer takes as long whatever part of
it was right. Header bytes that are not UTF-8 (servers keep them as surrogates) are a wrong token, not an error.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from pathlib import Path


def given_token(token: str | None, token_file: str | None, variable: str, file_variable: str) -> str | None:
    """The token of the flags ``token`` or ``token_file`` (None: not given), else of the environment variables
    ``variable`` or ``file_variable``; a file is read (:func:`read_token_file`). The token and its file are one
    setting given two ways: both at the same level (two flags, or two variables) is a ValueError."""
    if token is not None and token_file is not None:
        raise ValueError("give --token or --token-file, not both")
    if token is None and token_file is None:
        token = os.environ.get(variable, "").strip() or None
        token_file = os.environ.get(file_variable, "").strip() or None
        if token is not None and token_file is not None:
            raise ValueError(f"set {variable} or {file_variable}, not both")
    return read_token_file(token_file) if token_file is not None else token


def read_token_file(path: str | os.PathLike) -> str:
    """The token in a file (surrounding whitespace and the final newline dropped); ValueError if unreadable or empty."""
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the token file {os.fspath(path)!r}: {error}") from None
    if not token:
        raise ValueError(f"the token file {os.fspath(path)!r} is empty")
    return token


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
