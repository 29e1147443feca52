"""The OTLP collector: OTLP/HTTP and OTLP/gRPC in, the same ``job_runs`` and ``dataset_status`` rows out.

Requests are decoded by :mod:`otel_datasink.otlp`, mapped by the configured profile and
:func:`otel_datasink.mapping.map_records` (the in-process path's code), appended to a write-ahead spool
(:mod:`.spool`) before they are acknowledged, and batched across requests into files (:mod:`.batcher`).
"""
