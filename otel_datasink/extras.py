"""The optional parts of otel-datasink and the one-line error a front door raises when its extra is missing.

``pip install otel-datasink`` brings what a job writing to a local folder needs (the OpenTelemetry SDK and
pyarrow); each other front door has an extra (see ``[project.optional-dependencies]`` in ``pyproject.toml``):

- ``s3``: a location ``s3://...`` (s3fs).
- ``query``: ``otel_datasink.local.connect``, ``otel-datasink query|status|ddl``, the ``datasink_db`` fixture
  (duckdb, sqlglot).
- ``replay``: ``otel-datasink replay`` (the OTLP decoding: opentelemetry-proto, protobuf).
- ``collector``: ``otel-datasink collector`` (aiohttp, grpcio, and the OTLP decoding).
- ``alerts``: ``otel-datasink alert`` delivering to Apprise URLs (apprise; Alertmanager needs nothing more).
- ``report``: ``otel-datasink report|serve`` (the query extra, and vl-convert-python for the charts).

A front door imports its extra's modules inside :func:`needs` (or through :func:`import_extra`), so a user without
the extra reads which one to install, in one line, instead of a traceback ending in ``No module named 'duckdb'``::

    with needs("query"):
        import duckdb
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

EXTRAS: dict[str, dict[str, str]] = {
    "s3": {"s3fs": "s3fs"},
    "query": {"duckdb": "duckdb", "sqlglot": "sqlglot"},
    "replay": {"google.protobuf": "protobuf", "opentelemetry.proto": "opentelemetry-proto"},
    "collector": {
        "aiohttp": "aiohttp",
        "grpc": "grpcio",
        "prometheus_client": "prometheus_client",
        "google.protobuf": "protobuf",
        "opentelemetry.proto": "opentelemetry-proto",
    },
    "alerts": {"apprise": "apprise"},
    "report": {"duckdb": "duckdb", "sqlglot": "sqlglot", "vl_convert": "vl-convert-python"},
}
"""For each extra, the modules its front doors import (module -> the distribution that provides it)."""


class MissingExtraError(ImportError):
    """A front door was used without its extra installed; the message says what to install, on one line.

    An :class:`ImportError`, so that code catching a missing optional dependency the usual way still does.
    """

    def __init__(self, module: str, extra: str) -> None:
        self.extra = extra
        self.distribution = EXTRAS[extra][module]
        super().__init__(f"{self.distribution} is not installed: pip install 'otel-datasink[{extra}]'", name=module)


def missing_module(error: ImportError, extra: str) -> str | None:
    """The module of ``extra`` whose absence ``error`` reports, or ``None`` when it is about something else.

    ``error.name`` is the module that was not found: the module itself, or a parent package of it (``google``
    for ``google.protobuf`` when no ``google`` package is installed at all). A module that is installed but fails
    to import (a broken install, an incompatible version) is not "missing": its own error is clearer.
    """
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    for module in EXTRAS[extra]:
        if module == error.name or module.startswith(error.name + "."):
            return module
    return None


@contextlib.contextmanager
def needs(extra: str | None) -> Iterator[None]:
    """Turns a missing module of ``extra``, imported in the block, into a :class:`MissingExtraError` (``None``:
    a block that needs no extra)."""
    if extra is None:
        yield
        return
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    try:
        yield
    except ImportError as error:
        module = missing_module(error, extra)
        if module is None:
            raise
        raise MissingExtraError(module, extra) from error


def import_extra(module: str, extra: str) -> ModuleType:
    """``module`` (one of ``extra``'s), imported; a :class:`MissingExtraError` when it is not installed."""
    with needs(extra):
        return importlib.import_module(module)
