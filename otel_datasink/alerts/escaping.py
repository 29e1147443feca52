"""User data in what alerting sends, made inert: job and dataset names, run ids, error messages and summaries come
from spans that anyone able to send one wrote, and must not move a link. Every builder of a link uses this
(:mod:`.conditions` for the alerts, the report's trace links):

- :func:`fill_link`: a ``--trace-url`` / ``--run-url`` template with every field percent-encoded (all but RFC 3986's
  unreserved characters, ``/`` included), so a value is one path segment or one query value, never more; a link
  whose path would hold a dot-segment (a field that is ``..``) is not made.
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping
from typing import Any

# --- links -----------------------------------------------------------------------------------------------------

_DOT_SEGMENTS = frozenset({".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"})
"""A path segment that URL resolution removes, with the one above it for ``..`` (the WHATWG URL standard, which
browsers follow, counts ``%2e`` as a dot)."""


def fill_link(template: str, values: Mapping[str, Any]) -> str | None:
    """``template`` (a ``--trace-url`` / ``--run-url``) with its fields taken from ``values``, each percent-encoded:
    all but ``A-Z a-z 0-9 - . _ ~``, ``/ ? # & = @ :`` included. None when a field has no value (no link with a hole
    in it) or when the link's path would hold a dot-segment: a ``..`` in a field would take the link up the
    template's path, and no encoding of it survives a browser's resolution."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    filled = {name: values.get(name) for name in fields}
    if any(value in (None, "") for value in filled.values()):
        return None
    link = template.format(**{name: urllib.parse.quote(str(value), safe="") for name, value in filled.items()})
    if any(segment.lower() in _DOT_SEGMENTS for segment in urllib.parse.urlsplit(link).path.split("/")):
        return None
    return link
