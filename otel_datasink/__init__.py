"""otel-datasink: OpenTelemetry traces of data jobs as queryable ``job_runs`` and ``dataset_status`` tables."""

from otel_datasink.api import JobRun, configure, job_run
from otel_datasink.exporter import DatasinkSpanExporter
from otel_datasink.processor import DatasinkSpanProcessor

__all__ = ["DatasinkSpanExporter", "DatasinkSpanProcessor", "JobRun", "configure", "job_run"]
__version__ = "0.1.0"
