"""Alerting over the views: conditions (stale datasets, failing jobs, hung runs, volume anomalies, missing runs)
become incidents, notified once, reminded after a suppression interval, resolved when the condition clears.

The incident state is data: every notification event is a row of the ``alerts`` table, at the same location and
in the same format as ``job_runs`` and ``dataset_status``; ``alerts_open`` is its view of open incidents.

- :mod:`.engine`: one evaluation, the parts below in turn under the location's lock (``otel-datasink alert``).
- :mod:`.model`: the types passed between the parts.
- :mod:`.rules`: the rules file (owners, targets, severities, thresholds, intervals).
- :mod:`.conditions`: what holds now, read from the views.
- :mod:`.incidents`: what to send and which rows to write, from the conditions and the ``alerts`` history.
- :mod:`.delivery`: sending to Apprise URLs and to Prometheus Alertmanager.
- :mod:`.escaping`: user data in messages and links made inert (links, lines, Markdown and mentions).
- :mod:`.metrics`: the health gauges of the last evaluation (``alert --watch``).
"""
