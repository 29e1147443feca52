"""Dashboards: the views of a location as one self-contained HTML page (``otel-datasink report``), or the
same page served live (``otel-datasink serve``).

- :mod:`~otel_datasink.report.data`: what the page shows, read from the views;
- :mod:`~otel_datasink.report.charts`: Vega-Lite specs rendered to SVG with vl-convert at build time;
- :mod:`~otel_datasink.report.graphs`: the lineage graph and a pipeline run's Gantt, as SVG;
- :mod:`~otel_datasink.report.page`: the HTML page;
- :mod:`~otel_datasink.report.builder`: the three together (:func:`build`);
- :mod:`~otel_datasink.report.pageserver`: the read-only HTTP server of ``serve``.
"""

from __future__ import annotations

from otel_datasink.report.builder import LocationMissingError, Report, build

__all__ = ["LocationMissingError", "Report", "build"]
