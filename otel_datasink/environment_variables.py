"""Environment variables of otel-datasink, in the style of ``opentelemetry.sdk.environment_variables``.

Registered under the ``opentelemetry_environment_variables`` entry point group, so that
``opentelemetry-instrument --help`` lists each of them as a flag (``--exporter_datasink_location`` ...).
An explicit argument to ``DatasinkSpanProcessor``/``DatasinkSpanExporter``/``configure`` wins over the variable.

Each value is checked when it is read (:data:`otel_datasink.config.SETTINGS`), as the SDK's BatchSpanProcessor
checks its arguments: an argument that is not valid raises ValueError naming the option; a variable that is not
is logged once (a warning naming the variable and its value) and the option keeps its default, so that a typo in
a job's environment never stops the job (the collector's variables follow the same rules). No value can make the
processor spin or drop every span: counts are at least 1, delays more than 0.
"""

OTEL_EXPORTER_DATASINK_LOCATION = "OTEL_EXPORTER_DATASINK_LOCATION"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_LOCATION

Where the tables are written: a local path or any fsspec URL (``s3://bucket/prefix``, ``file:///data``).
Default: ``./datasink``.
"""

OTEL_EXPORTER_DATASINK_PROFILE = "OTEL_EXPORTER_DATASINK_PROFILE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_PROFILE

The mapping profile that decides which spans are job runs and how their attributes become columns:
``default`` (every built-in producer at once: the contract's spans, Airflow's, the OTel CI/CD conventions'),
``contract``, ``airflow``, ``cicd``, or the path of a TOML mapping file, whose rules are tried before the
built-ins; several separated by commas narrow to those (``contract,rules.toml``: the file and the contract's
spans only). Default: ``default``.
"""

OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL = "OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_S3_ENDPOINT_URL

Endpoint of an S3-compatible store (MinIO, LocalStack, ...): an ``http://`` or ``https://`` URL.
Default: AWS's own endpoint (or ``AWS_ENDPOINT_URL``).
Credentials always come from the standard AWS chain (environment, profile, instance role).
"""

OTEL_EXPORTER_DATASINK_S3_REGION = "OTEL_EXPORTER_DATASINK_S3_REGION"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_S3_REGION

AWS region of the bucket. Default: the standard AWS chain (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile).
"""

OTEL_EXPORTER_DATASINK_COMPRESSION = "OTEL_EXPORTER_DATASINK_COMPRESSION"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COMPRESSION

Parquet compression codec: ``zstd`` (default), ``snappy``, ``gzip``, ``lz4``, ``brotli`` or ``none``.
"""

OTEL_EXPORTER_DATASINK_TIMEOUT = "OTEL_EXPORTER_DATASINK_TIMEOUT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_TIMEOUT

Milliseconds one write may take, retries included. Past it the span processor keeps the rows for its next
flush (they are dropped only past ``max_queue_size``), the exporter reports the batch as failed. Also the default
bound of the processor's ``shutdown()``, except at process exit (:envvar:`OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT`).
More than 0. Default: 30000.
"""

OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT = "OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_EXIT_TIMEOUT

Milliseconds the rows still held may take to be written when the process exits without calling ``shutdown()``
(the span processor's pending rows, and the spans a ``BatchSpanProcessor`` of the global provider still holds
for the exporter). Past it the process exits and the rows not written are counted in one log line.
0 or more: 0 gives them up at once (still counted). Default: 5000.
"""

OTEL_EXPORTER_DATASINK_SCHEDULE_DELAY = "OTEL_EXPORTER_DATASINK_SCHEDULE_DELAY"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_SCHEDULE_DELAY

Milliseconds the span processor's rows wait, at most, before they are written (unless a ``force_flush``,
``shutdown`` or a full file writes them sooner). More than 0: 0 would wake the worker in a busy loop.
Default: 5000.
"""

OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE = "OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE

Spans the processor holds while the store is slow or away; past it the oldest are dropped and counted.
At least 1 (0 would drop every span). Default: 2048.
"""

OTEL_EXPORTER_DATASINK_MAX_EXPORT_BATCH_SIZE = "OTEL_EXPORTER_DATASINK_MAX_EXPORT_BATCH_SIZE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_MAX_EXPORT_BATCH_SIZE

Queued spans that wake the span processor's worker early to map them (rows are written per file of up to
``max_queue_size`` rows, at most 8192). At least 1 (0 would spin the worker) and at most
:envvar:`OTEL_EXPORTER_DATASINK_MAX_QUEUE_SIZE`, as in the SDK. Default: 512, or the queue size if smaller.
"""

OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX = "OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_OPENLINEAGE_NAMESPACE_PREFIX

``true`` to write an OpenLineage job's ``job_name`` as ``<job namespace>/<job name>`` (``prod-airflow/etl.load``)
instead of its name alone (``etl.load``), for when two namespaces (two Airflow instances) run jobs of the same
name. The namespace is in the ``attributes`` column (``openlineage.job.namespace``) either way. Read by the
collector's ``POST /api/v1/lineage`` and by ``otel-datasink replay``. ``true``/``false`` (also ``1``/``0``,
``yes``/``no``, ``on``/``off``). Default: ``false``.
"""

OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTES = "OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTES"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTES

Attributes a span keeps when it is mapped (as ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` bounds them in the SDK): the first
ones in order, and any later one the mapping or the profile reads (``job.name``, ``dataset.name``, ...), so that a
run is never lost to the limit. The others are dropped, counted in the row's ``attributes`` as
``otel_datasink.dropped_attributes_count`` and in the front door's metrics. Applied alike by the span processor, the
exporter, the collector (while it decodes a request) and ``replay``. At least 1. Default: 128.
"""

OTEL_EXPORTER_DATASINK_MAX_EVENTS = "OTEL_EXPORTER_DATASINK_MAX_EVENTS"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_MAX_EVENTS

Events a span keeps when it is mapped, the first ones (as ``OTEL_SPAN_EVENT_COUNT_LIMIT`` in the SDK): a
``dataset.update`` or ``dataset.check`` event past it makes no row. The others are dropped, counted in the row's
``attributes`` as ``otel_datasink.dropped_events_count`` and in the front door's metrics. At least 1. Default: 128.
"""

OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTE_LENGTH = "OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTE_LENGTH"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_MAX_ATTRIBUTE_LENGTH

Characters kept of a value in the ``attributes`` column (as ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` in the SDK); a
longer value is cut, counted in the row's ``attributes`` as ``otel_datasink.truncated_values_count`` and in the
front door's metrics. The columns (names, error messages) keep up to 32768 characters whatever this is. At least 1
and at most 32768. Default: 32768.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT = "OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_HTTP_ENDPOINT

``HOST:PORT`` the collector's OTLP/HTTP receiver listens on, or ``none`` to disable it. Default: ``127.0.0.1:4318``.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT = "OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_GRPC_ENDPOINT

``HOST:PORT`` the collector's OTLP/gRPC receiver listens on, or ``none`` to disable it. Default: ``127.0.0.1:4317``.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN = "OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN

Bearer token the collector requires (``Authorization: Bearer <token>``) on OTLP requests. Default: none required.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES = "OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_BODY_BYTES

Largest OTLP request the collector accepts, in bytes, before and after decompression. At least 1, and at most the
in-flight budget (``OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES``). Default: 16777216 (16 MiB).
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE = "OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN_FILE

A file holding the bearer token clients must send (so that it is not visible in ``ps``). Not together with
``OTEL_EXPORTER_DATASINK_COLLECTOR_TOKEN``; an empty or unreadable file is an error. Default: none.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES = "OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_INFLIGHT_BYTES

Memory the collector's requests hold at once, OTLP/HTTP and OTLP/gRPC together, in bytes: their bodies, and the
estimated memory of their decoding (about 20 times the size of a request of small spans, 48 times a protobuf
request under 1 MiB). A request whose body would pass it gets 503 (UNAVAILABLE) with Retry-After before its body is
read, one whose decoding would, once its body is in (after waiting up to 2 s for room); one whose decoding alone
would pass it gets 413 (RESOURCE_EXHAUSTED). At least the largest request. Default: 268435456 (256 MiB).
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS = "OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_MAX_CONNECTIONS

Open OTLP/HTTP connections; more are answered 503 and closed (lowered below the open-file limit when that is
smaller). At least 1. Default: 1000.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_HEADER_TIMEOUT

Milliseconds a request's headers may take from its first byte (then 408 and the connection closed). More than 0.
Default: 10000.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_BODY_TIMEOUT

Milliseconds a request's body may take (then 408 and the connection closed). More than 0. Default: 30000.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT = "OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_IDLE_TIMEOUT

Milliseconds a connection may wait for its (next) request before it is closed. More than 0. Default: 30000.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR = "OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_SPOOL_DIR

Folder of the collector's write-ahead spool: acknowledged requests whose rows are not yet written, replayed on
restart. Default: ``$XDG_CACHE_HOME/otel-datasink/spool/<hash of the location>`` (``~/.cache`` without XDG).
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS = "OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_ROWS

Rows at which the collector rolls its current batch into files. At least 1. Default: 50000.
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES = "OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_BYTES

Bytes of OTLP requests (decompressed, as spooled) at which the collector rolls its current batch into files.
At least 1. Default: 67108864 (64 MiB).
"""

OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE = "OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_COLLECTOR_FLUSH_AGE

Milliseconds after its first row at which the collector rolls its current batch into files. More than 0.
Default: 30000.
"""

OTEL_EXPORTER_DATASINK_SERVE_TOKEN = "OTEL_EXPORTER_DATASINK_SERVE_TOKEN"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_SERVE_TOKEN

Token ``otel-datasink serve`` requires of every reader: ``Authorization: Bearer <token>``, or a browser's login
with the token as password (any user name). Required to listen on an address other than loopback. Default: none.
"""

OTEL_EXPORTER_DATASINK_SERVE_TOKEN_FILE = "OTEL_EXPORTER_DATASINK_SERVE_TOKEN_FILE"
"""
.. envvar:: OTEL_EXPORTER_DATASINK_SERVE_TOKEN_FILE

A file holding that token (so that it is not visible in ``ps``). Not together with
``OTEL_EXPORTER_DATASINK_SERVE_TOKEN``; an empty or unreadable file is an error. Default: none.
"""
