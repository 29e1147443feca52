"""otel-datasink: OpenTelemetry traces of data jobs as queryable ``job_runs`` and ``dataset_status`` tables.

The public names are imported on first use (a module ``__getattr__``), not with the package: every process that
imports a submodule imports this package first (the CLI, the pytest plugin that pytest loads in every session
of an environment with otel-datasink, the ``OTEL_TRACES_EXPORTER`` entry points), and most need neither the
OpenTelemetry SDK nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # What type checkers and IDEs see; at run time these come from __getattr__ below.
    from otel_datasink.api import JobRun, configure, job_run
    from otel_datasink.exporter import DatasinkSpanExporter
    from otel_datasink.processor import DatasinkSpanProcessor

__all__ = ["DatasinkSpanExporter", "DatasinkSpanProcessor", "JobRun", "configure", "job_run"]

_LAZY: dict[str, str] = {
    "JobRun": "otel_datasink.api",
    "configure": "otel_datasink.api",
    "job_run": "otel_datasink.api",
    "DatasinkSpanExporter": "otel_datasink.exporter",
    "DatasinkSpanProcessor": "otel_datasink.processor",
}
"""Each public name and the module that defines it."""


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first access (``from otel_datasink import configure``); ``__version__``
    is the installed distribution's (:func:`otel_datasink.version.version`)."""
    if name == "__version__":
        from otel_datasink.version import version

        return version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cached as a plain attribute: later accesses do not come back here.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, with the public names not imported yet (for ``dir()`` and completion)."""
    return sorted({*globals(), *_LAZY})
