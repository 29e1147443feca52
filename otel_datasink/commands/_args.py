"""Options that several commands take alike: the views' parameters (``ddl``, ``query``, ``status``, ``alert``) and
``--allow-empty`` (``query``, ``status``, ``alert``). Here, so that no command imports another for them."""

from __future__ import annotations

import argparse
import dataclasses

from otel_datasink.catalog import ViewParameters

ALLOW_EMPTY_HINT = "--allow-empty accepts a location with no tables"
"""Said after the error of a location with no table (:class:`otel_datasink.local.NoTablesError`)."""


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`ViewParameters` field, e.g. ``--window-days 30``."""
    group = parser.add_argument_group("view parameters")
    for field in dataclasses.fields(ViewParameters):
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type == "int" else float,
            default=field.default,
            metavar="N",
            help=f"{field.metadata['help']} (default {field.default})",
        )


def view_parameters(args: argparse.Namespace) -> ViewParameters:
    """The :class:`ViewParameters` of parsed options; ValueError when they do not hold together (the command
    line's :func:`otel_datasink.cli.main` reports it on one line)."""
    return ViewParameters(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ViewParameters)})


def add_allow_empty_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-empty``: a location with no table (missing, empty) is empty tables rather than an error."""
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a location that does not exist or holds no table yet (empty tables) instead of failing",
    )
