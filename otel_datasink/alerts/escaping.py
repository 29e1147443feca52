"""User data in what alerting sends, made inert: job and dataset names, run ids, error messages and summaries come
from spans that anyone able to send one wrote, and must not move a link, start a line of a message, mention anybody
or format anything. Every message builder uses these (:mod:`.delivery`, :mod:`.conditions`, ``otel-datasink alert``
and the report's trace links), one function per concern:

- :func:`fill_link`: a ``--trace-url`` / ``--run-url`` template with every field percent-encoded (all but RFC 3986's
  unreserved characters, ``/`` included), so a value is one path segment or one query value, never more; a link
  whose path would hold a dot-segment (a field that is ``..``) is not made.
- :func:`one_line`: text inside a line of the message (a name, a summary, a line of an error): its line breaks shown
  as ``⏎``, its other control characters and bidirectional overrides as ``�``. A multi-line text (an error) is split
  into lines (:func:`text_lines`) that the builder indents under its label: no user text starts a line.
- :class:`Format`: how a target shows text. :data:`TEXT` for those that show it as it is (webhooks, e-mail, Slack,
  whose Apprise plugin escapes ``& < >``, Telegram and HTML e-mail, which Apprise escapes as HTML), :data:`MARKDOWN`
  for those that render Markdown and act on mentions (:func:`format_of` tells them apart).
"""

from __future__ import annotations

import dataclasses
import re
import string
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
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


# --- lines -----------------------------------------------------------------------------------------------------

LINE_BREAK = "⏎"
"""What a line break inside a one-line text is shown as."""
REPLACEMENT = "\ufffd"
"""What another control character, or a bidirectional override, is shown as."""
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""The characters ``str.splitlines()`` breaks lines at (receivers differ on which they break at: all of them)."""
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Bidirectional marks, embeddings, overrides and isolates: they reorder what is shown after them."""
_INERT = str.maketrans(
    {
        **{chr(code): REPLACEMENT for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) != "\t"},
        **dict.fromkeys(_BIDI, REPLACEMENT),
        **dict.fromkeys(_LINE_BREAKS, LINE_BREAK),
    }
)


def one_line(value: object) -> str:
    """``value`` as text that stays on its line: line breaks as :data:`LINE_BREAK` (``\\r\\n`` as one), other
    control characters (a terminal's ESC included) but the tab, and bidirectional overrides, as
    :data:`REPLACEMENT`."""
    return str(value).replace("\r\n", "\n").translate(_INERT)


def text_lines(value: object) -> list[str]:
    """``value``'s lines, each :func:`one_line`: for a builder to put each under its own label or indentation."""
    return [one_line(line) for line in str(value).splitlines()]


# --- formats ---------------------------------------------------------------------------------------------------

_MARKDOWN_SYNTAX = re.compile(r"([\\`*_~|\[\]()<>#+\-=.!{}]|&(?=#?[0-9A-Za-z]{1,32};))")
"""What CommonMark (and Discord's, Mattermost's and Zulip's Markdown) give a meaning to: emphasis, code, links and
images, headings, lists, quotes, tables, spoilers, raw HTML and entities. Each is backslash-escaped, which every
CommonMark renderer shows as the character alone."""
ZERO_WIDTH_SPACE = "\u200b"


def _markdown(text: str) -> str:
    """``text`` as Markdown that shows it as it is: its syntax backslash-escaped, and a zero-width space after each
    ``@`` so that ``@everyone``, ``@here``, ``@channel``, ``@all``, ``<@U123>`` and ``<@&role>`` are no mentions
    (what Discord's own libraries do)."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", text).replace("@", "@" + ZERO_WIDTH_SPACE)


def _as_is(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True)
class Format:
    """How a target shows text: the ``body_format`` Apprise is told, and how user text is escaped for it."""

    name: str
    """``text`` or ``markdown``: Apprise converts the message from it only where the target needs (text to HTML)."""
    escape: Callable[[str], str]
    """User text (already :func:`one_line`) as the target must be given it to show it as it is."""

    def inline(self, value: object) -> str:
        """User text inside a line of the message: :func:`one_line`, then escaped."""
        return self.escape(one_line(value))


TEXT = Format("text", _as_is)
MARKDOWN = Format("markdown", _markdown)

RENDERS_MARKDOWN = frozenset({"discord", "mmost", "mmosts", "zulip"})
"""Apprise schemes of chat services that render the text Apprise hands them as it is (its format ``text``) as
Markdown, and act on the mentions in it."""


def _schemes(service: Any) -> set[str]:
    schemes: set[str] = set()
    for attribute in ("protocol", "secure_protocol"):
        value = getattr(service, attribute, None)
        schemes.update([value] if isinstance(value, str) else value or ())
    return schemes


def _shows(service: Any) -> str:
    """The format an Apprise service shows a text message in (Apprise 2 resolves it per message, from the formats
    the service takes and the URL's ``?format=``; Apprise 1 has one per service)."""
    resolve = getattr(service, "resolve_format", None)
    shown = resolve("text") if resolve is not None else service.notify_format
    return str(getattr(shown, "value", shown))


def format_of(services: Iterable[Any]) -> Format:
    """The :class:`Format` to write for Apprise services (those of one target): :data:`MARKDOWN` when any shows text
    as Markdown (its format, or a scheme of :data:`RENDERS_MARKDOWN`), else :data:`TEXT`."""
    for service in services:
        if _shows(service) == "markdown" or _schemes(service) & RENDERS_MARKDOWN:
            return MARKDOWN
    return TEXT
