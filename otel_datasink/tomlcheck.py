"""Rule files in TOML (mapping files, alert rules): a declarative description of their tables, checked at load,
and a mistake reported with its key and the line it is on.

Each :class:`Table` lists its keys with the reader of each value. Within a table, an unknown key is reported
first: a misspelt required key is both unknown and missing, and the unknown one is the mistake to fix.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class Invalid(Exception):
    """A value its key does not take; ``path`` is the key below the one being read ("" for that key itself)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, key: str) -> Invalid:
        """The same problem, seen from the table holding ``key`` (``[n]`` for an item of an array of tables)."""
        below = "" if not self.path else self.path if self.path.startswith("[") else f".{self.path}"
        return Invalid(self.message, f"{key}{below}")


Reader = Callable[[Any], Any]
"""A key's value (None when the key is absent) -> what it becomes; raises :class:`Invalid`."""


def optional(reader: Reader, default: Any = None) -> Reader:
    """``reader`` for a key that may be absent: ``default`` then."""
    return lambda value: default if value is None else reader(value)


@dataclasses.dataclass(frozen=True)
class Table:
    """A TOML table: its keys with their readers, what it becomes, and how each mistake in it is worded."""

    keys: Mapping[str, Reader]
    build: Callable[[dict[str, Any]], Any] = dict
    """The values read, every key of :attr:`keys` present (None if absent) -> what the table becomes."""
    required: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Keys that must be present -> the message when one is not (reported at the table's key)."""
    not_table: str = "must be a table"
    """The message for a value that is not a table (or an empty one, unless ``may_be_empty``)."""
    unknown: str = "unknown key (expected one of {expected})"
    """The message for a key not in :attr:`keys`; ``{expected}`` is replaced by their names."""
    may_be_empty: bool = True
    exactly_one: bool = False
    """Whether the table holds exactly one of its keys (a source: attribute, resource or constant)."""

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Mapping) or not (value or self.may_be_empty):
            raise Invalid(self.not_table)
        missing = [message for key, message in self.required.items() if key not in value]
        unknown = sorted(set(value) - set(self.keys))
        if unknown:  # before the missing keys: a misspelt key is both, and the misspelling is what to fix
            message = self.unknown.format(expected=", ".join(self.keys))
            raise Invalid("; ".join([message, *missing]), unknown[0])
        if missing:
            raise Invalid(missing[0])
        if self.exactly_one and len(value) != 1:
            raise Invalid(f"needs exactly one of {', '.join(self.keys)}")
        read = {}
        for key in [*value, *(key for key in self.keys if key not in value)]:  # the file's order, then the rest
            try:
                read[key] = self.keys[key](value.get(key))
            except Invalid as error:
                raise error.under(key) from None
        return self.build(read)


def string(message: str) -> Reader:
    def read(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(message)
        return value

    return read


def read_rule_file(path: str | os.PathLike, rule: Table, kind: str, error: Callable[[str], Exception]) -> list[Any]:
    """The ``[[rule]]`` tables of the TOML file at ``path``, each read by ``rule``; raises ``error(message)``
    (``kind`` names the file in it: ``mapping file``, ``rules file``) for a file that cannot be read, is not
    TOML, or has a mistake, naming its line and key."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as problem:
        raise error(f"cannot read {kind} {path}: {problem.strerror or problem}") from problem
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as problem:  # tomllib's message already ends with "(at line N, column M)"
        raise error(f"{kind} {path}: not valid TOML: {problem}") from problem
    try:
        return _rule_file(rule, kind)(document)
    except Invalid as problem:
        line = line_of(text.splitlines(), problem.path)
        where = f", line {line}" if line is not None else ""
        raise error(f"{kind} {path}{where}: {problem.path}: {problem.message}") from None


def _rule_file(rule: Table, kind: str) -> Table:
    """The description of a whole file: ``[[rule]]`` tables only, at least one."""

    def rules(value: Any) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise Invalid(f"no [[rule]] table: a {kind} needs at least one")
        read = []
        for index, item in enumerate(value):
            try:
                read.append(rule(item))
            except Invalid as problem:
                raise problem.under(f"[{index + 1}]") from None
        return read

    return Table(
        keys={"rule": rules},
        build=lambda read: read["rule"],
        unknown=f"unknown key (a {kind} has [[rule]] tables only)",
    )


_RULE_START = re.compile(r"\s*\[\[\s*rule\s*\]\]")
_RULE_KEY = re.compile(r"rule\[(\d+)\]")


def line_of(lines: list[str], key: str) -> int | None:
    """The line (1-based) of a dotted key such as ``rule[2].select.name_regex``, looked up within its rule."""
    start, end, rule = 0, len(lines), _RULE_KEY.match(key)
    if rule is not None:
        # The lines of the rule's own [[rule]] table.
        starts = [index for index, line in enumerate(lines) if _RULE_START.match(line)]
        number = int(rule.group(1))
        if number <= len(starts):
            start = starts[number - 1]
            end = starts[number] if number < len(starts) else len(lines)
    # Try the most specific part of the dotted key first, then its parents.
    parts = [part for part in re.split(r"\.(?![^\[]*\])", key) if part and not part.startswith("rule[")]
    for part in reversed(parts):
        bare = re.escape(part.strip('"'))
        pattern = re.compile(rf'(^|[\s{{,.\[])"?{bare}"?\s*(=|\]|\.)')
        for index in range(start, end):
            if pattern.search(lines[index]):
                return index + 1
    return start + 1 if rule is not None and start < len(lines) else None
