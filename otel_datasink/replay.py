"""Replay: OTLP JSON Lines files (the OpenTelemetry file exporter's format) and OpenLineage JSON Lines files (the
OpenLineage client's file transport) written to the tables.

A line is OpenLineage when it is an object with OpenLineage's keys (``eventType``, ``eventTime``, ``run``, ``job``
...) and no ``resourceSpans``, or an array of such objects (``--format auto``, the default: told line by line by
:func:`otel_datasink.formats.format_of`, so one file may hold both); ``--format otlp`` or ``--format openlineage``
reads every line as that. A file whose first line is a lone ``{`` or ``[`` (the file transport's ``debug_mode``
indents each event over many lines) is read as one JSON document. OpenLineage events are translated by
:mod:`otel_datasink.openlineage` into the span conventions and mapped by the contract's profile (the ``--profile``
given is for spans).

Each line is one OTLP ``TracesData`` / ``ExportTraceServiceRequest`` object in the OTLP JSON encoding; a file
may be gzip-compressed (told by its first bytes, whatever its name). Lines are decoded by
:mod:`otel_datasink.otlp`, mapped by the profile and :func:`~otel_datasink.mapping.map_records`, and written by
the :class:`~otel_datasink.writer.Writer`: the pipeline of every other front door, so a span gives the rows it
would have given when it was live.

A line that is not JSON or not OTLP trace data is skipped and reported with its number; the rest of the file
is still read. A gzip file cut short (a crashed writer) or corrupt after its first two bytes gives the lines before the
damage, and the damage is reported as one bad line; the next file is still read.

Replaying a file twice writes the same rows again (run ids derive from trace and span ids), which the views
collapse: no view's answer changes.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from typing import IO

import fsspec

from otel_datasink import semconv
from otel_datasink.config import Options
from otel_datasink.formats import Format, decode_document, format_of
from otel_datasink.mapping import MappedSpan, SpanRecord, Truncation, map_records
from otel_datasink.openlineage import OpenLineageError
from otel_datasink.otlp import OtlpDecodeError, Rejections
from otel_datasink.pipeline import Pipeline
from otel_datasink.profiles import Profile, default_profile
from otel_datasink.schema import (
    DATASET_CHECKS_TABLE,
    DATASET_STATUS_TABLE,
    FUTURE_TOLERANCE_DAYS,
    JOB_RUNS_TABLE,
    count_future_dated,
)
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)

DEFAULT_BATCH_SPANS = 20_000
"""Spans mapped and written together: one file per table per partition per batch."""

_GZIP_MAGIC = b"\x1f\x8b"

_CLAIMED: dict[str, Format | None] = {"auto": None, "otlp": Format.OTLP_JSON, "openlineage": Format.OPENLINEAGE}
FORMATS = tuple(_CLAIMED)
"""What ``replay`` reads a line as: told by its keys (``auto``), or every line as OTLP or as OpenLineage."""


@dataclasses.dataclass
class BadLine:
    """A line that was skipped."""

    path: str
    line: int
    reason: str


@dataclasses.dataclass
class Summary:
    """What a replay read and wrote."""

    files: int = 0
    lines: int = 0
    spans: int = 0
    """Spans read (those rejected as unidentifiable included)."""
    rejections: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Reason (:data:`otel_datasink.otlp.INVALID_ID` ...) -> spans that cannot be recorded for it."""
    future_dated_rows: int = 0
    """Rows written with a time too far ahead of the clock (:func:`~otel_datasink.schema.count_future_dated`)."""
    lineage_events: int = 0
    """OpenLineage events read (RUNNING, OTHER, job and dataset events included: they make no row)."""
    job_runs: int = 0
    """``job_runs`` rows: one per job span (one per try of a retried Prefect task's span), so one per OpenLineage
    START and one per COMPLETE of the same run."""
    dataset_updates: int = 0
    checks: int = 0
    """``dataset_checks`` rows (said only when there are some)."""
    files_written: int = 0
    bad_lines: list[BadLine] = dataclasses.field(default_factory=list)
    truncation: Truncation = dataclasses.field(default_factory=Truncation)
    """What the span limits took from the rows (of those written, and of a batch whose write failed)."""

    @property
    def rejected_spans(self) -> int:
        """Spans that cannot be recorded (without a valid trace or span id, without an end time, malformed)."""
        return sum(self.rejections.values())

    @property
    def rows_written(self) -> int:
        """Rows of the span tables."""
        return self.job_runs + self.dataset_updates + self.checks

    def describe(self, max_bad_lines: int = 50) -> str:
        """The summary printed by ``otel-datasink replay``."""
        read = f"{self.spans} span(s)"
        if self.lineage_events:
            read += f" and {self.lineage_events} OpenLineage event(s)"
        tables = f"{self.job_runs} job_runs, {self.dataset_updates} dataset_status"
        tables += f", {self.checks} dataset_checks" if self.checks else ""
        text = (
            f"read {read} from {self.lines} line(s) of {self.files} file(s); wrote {self.rows_written} row(s) "
            f"({tables}) in {self.files_written} file(s)"
        )
        if self.rejected_spans:
            text += f"; {Rejections(self.rejections).describe()} skipped"
        if self.future_dated_rows:
            text += (
                f"; {self.future_dated_rows} row(s) dated more than {FUTURE_TOLERANCE_DAYS} day(s) ahead of now "
                "(kept, never a latest state: see the view future_dated_rows)"
            )
        cut = self.truncation
        if cut.dropped_attributes or cut.dropped_events or cut.truncated_values:
            text += (
                f"; span limits dropped {cut.dropped_attributes} attribute(s) and {cut.dropped_events} event(s), "
                f"cut {cut.truncated_values} value(s)"
            )
        text += f"; {len(self.bad_lines)} bad line(s) skipped"
        shown = [f"  {bad.path}:{bad.line}: {bad.reason}" for bad in self.bad_lines[:max_bad_lines]]
        if len(self.bad_lines) > max_bad_lines:
            shown.append(f"  ... and {len(self.bad_lines) - max_bad_lines} more")
        return "\n".join([text, *shown])


def lineage_profile(run_type: str | None = None) -> Profile:
    """The profile OpenLineage events are mapped with: the contract's (they are in the span conventions once
    translated), marking runs with ``run_type`` (:func:`with_run_type`) when one is given."""
    return with_run_type(default_profile, run_type) if run_type else default_profile


def with_run_type(profile: Profile, run_type: str) -> Profile:
    """``profile``, then ``job.run.type = run_type`` on the job spans that do not say their run type (each record,
    when the profile makes several of a span)."""

    def mark(mapped: SpanRecord) -> SpanRecord:
        if mapped.attributes.get(semconv.JOB_RUN_TYPE) not in (None, ""):
            return mapped
        return dataclasses.replace(mapped, attributes={**mapped.attributes, semconv.JOB_RUN_TYPE: run_type})

    def marked(record: SpanRecord) -> MappedSpan:
        mapped = profile(record)
        if mapped is None or isinstance(mapped, SpanRecord):
            return None if mapped is None else mark(mapped)
        return [mark(one) for one in mapped]

    return marked


def open_pipeline(options: Options, run_type: str | None = None) -> Pipeline:
    """The pipeline a replay writes with (:meth:`Pipeline.open <otel_datasink.pipeline.Pipeline.open>`): the profile
    the options name, which marks the job spans with ``run_type`` (:func:`with_run_type`) when one is given."""
    pipeline = Pipeline.open(options)
    return pipeline.with_profile(with_run_type(pipeline.profile, run_type)) if run_type else pipeline


def _decompressed(raw: IO[bytes]) -> IO[bytes] | gzip.GzipFile:
    head = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if head == _GZIP_MAGIC else raw


def _lines(path: str, progress: Callable[[int], object] | None, whole: bool = False) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of a file, plain or gzip; ``progress`` gets the compressed bytes consumed.

    ``whole``: a file whose first non-blank line is a lone ``{`` or ``[`` is one JSON document over many lines (the
    OpenLineage file transport's ``debug_mode``), yielded at once as its first line.
    """
    with fsspec.open(path, "rb") as raw:
        position = 0
        document: list[bytes] | None = None
        start = 0
        for number, line in enumerate(_decompressed(raw), start=1):
            if progress is not None:
                now = raw.tell()
                progress(now - position)
                position = now
            if document is not None:
                document.append(line)
                continue
            stripped = line.strip()
            if whole and stripped in (b"{", b"["):
                document, start = [line], number
                continue
            if stripped:
                whole = False  # only the first non-blank line decides
            yield number, line
        if document is not None:
            yield start, b"".join(document)


def file_size(path: str) -> int:
    """Bytes of a file (local path or fsspec URL), 0 when unknown."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    try:
        return int(fs.size(fs_path) or 0)
    except (OSError, ValueError):
        return 0


def replay(
    paths: list[str],
    writer: Writer,
    profile: Profile,
    *,
    batch_spans: int = DEFAULT_BATCH_SPANS,
    progress: Callable[[int], object] | None = None,
    summary: Summary | None = None,
    input_format: str = "auto",
    lineage: Profile | None = None,
    namespace_prefix: bool = False,
) -> Summary:
    """Reads OTLP or OpenLineage JSON Lines files and writes their job runs' rows; returns what it did.

    ``input_format`` is one of :data:`FORMATS`; ``lineage`` the profile OpenLineage events are mapped with
    (:func:`lineage_profile`); ``namespace_prefix`` the ``openlineage_namespace_prefix`` option.

    Raises OSError when a file cannot be opened and :class:`~otel_datasink.writer.WriteError` when the store
    keeps failing; rows of the batches written before stay (a second replay adds only duplicates). A
    ``summary`` passed in is filled in as the replay goes, so that a caller whose replay raised (or was
    interrupted: KeyboardInterrupt) still knows what was read and written.
    """
    if input_format not in FORMATS:
        raise ValueError(f"unknown format {input_format!r} (one of {', '.join(FORMATS)})")
    summary = Summary() if summary is None else summary
    lineage = default_profile if lineage is None else lineage
    claimed = _CLAIMED[input_format]
    batch: list[SpanRecord] = []
    events: list[SpanRecord] = []
    for path in paths:
        summary.files += 1
        number = 0
        try:
            for number, raw_line in _lines(path, progress, whole=input_format != "otlp"):
                line = raw_line.strip()
                if not line:
                    continue
                summary.lines += 1
                try:
                    document = json.loads(line)
                    decoded = decode_document(format_of(document, claimed), document, namespace_prefix=namespace_prefix)
                except (ValueError, RecursionError) as error:  # JSONDecodeError, OtlpDecodeError: ValueErrors
                    if isinstance(error, OtlpDecodeError):
                        reason = "not OTLP trace data"
                    elif isinstance(error, OpenLineageError):
                        reason = "not an OpenLineage run event"
                    else:
                        reason = "not JSON"
                    summary.bad_lines.append(BadLine(path, number, f"{reason}: {_short(error)}"))
                    continue
                summary.spans += decoded.spans
                summary.rejections.update(decoded.rejected.reasons)
                summary.lineage_events += len(decoded.event_types)
                if decoded.format == Format.OPENLINEAGE:
                    events.extend(decoded.records)
                else:
                    batch.extend(decoded.records)
                if len(batch) + len(events) >= batch_spans:
                    _flush(batch, events, writer, profile, lineage, summary)
                    batch, events = [], []
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            # Raised by the decompression alone: the lines before the damage stand, the rest is unreadable.
            summary.bad_lines.append(BadLine(path, number + 1, f"gzip data cut short or corrupt: {_short(error)}"))
    _flush(batch, events, writer, profile, lineage, summary)
    for bad in summary.bad_lines:
        _logger.info("skipped %s line %d: %s", bad.path, bad.line, bad.reason)
    return summary


def _flush(
    batch: list[SpanRecord],
    events: list[SpanRecord],
    writer: Writer,
    profile: Profile,
    lineage: Profile,
    summary: Summary,
) -> None:
    if not batch and not events:
        return
    limits, counts = writer.options.span_limits, summary.truncation
    rows = map_records(batch, profile, limits=limits, counts=counts)
    if events:
        # One write for both: spans and OpenLineage events of a batch share its files.
        for table, more in map_records(events, lineage, limits=limits, counts=counts).items():
            rows[table].extend(more)
    if any(rows.values()):
        written = writer.write(rows, deadline=time.monotonic() + writer.options.timeout)
        summary.files_written += len(written)
    # Counted once written: the summary of a replay that failed or was interrupted says what is stored.
    summary.job_runs += len(rows[JOB_RUNS_TABLE])
    summary.dataset_updates += len(rows[DATASET_STATUS_TABLE])
    summary.checks += len(rows[DATASET_CHECKS_TABLE])
    summary.future_dated_rows += sum(count_future_dated(rows).values())


def _short(error: Exception, limit: int = 120) -> str:
    text = str(error)
    return text if len(text) <= limit else text[: limit - 3] + "..."
