"""The installed distribution's version: the one source is ``pyproject.toml``, read through the package metadata."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """``otel-datasink``'s version as installed, or ``"unknown"`` when run from a source tree never installed.

    Looked up on first use: importlib.metadata scans the environment's distributions (a quarter of ``--help``'s
    time), which only ``--version`` and the metrics' meter need.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("otel-datasink")
    except PackageNotFoundError:
        return "unknown"
