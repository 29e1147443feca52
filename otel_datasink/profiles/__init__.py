"""Mapping profiles: which spans are job runs, and how their attributes read in the contract's conventions.

A profile is a callable ``SpanRecord -> SpanRecord | None``: None for a span that is not a job run, else
the span rewritten so that the one mapping (:func:`otel_datasink.mapping.map_records`) reads it: the
contract's attributes (``job.name``, ``job.run.attempt``, ...) are added, the span's own attributes are kept
(they land in the ``attributes`` column), and the status may be set from a state attribute.

Profiles, chosen by the ``profile`` option or ``OTEL_EXPORTER_DATASINK_PROFILE``:

- ``default``: the contract's conventions (a span with ``job.name``);
- ``airflow``: Airflow's own DAG-run and task spans (:mod:`.airflow`);
- ``cicd``: the OpenTelemetry ``cicd.pipeline.*`` semantic conventions (:mod:`.cicd`);
- the path of a TOML mapping file (:mod:`.mapping_file`).

Every profile also takes spans that already follow the contract, so a job that sets ``job.name`` itself
is recorded whichever profile runs. A profile is loaded, and a mapping file checked, when the processor,
exporter, collector or replay starts: a bad profile fails there, never while spans are exported.

A profile may declare, as its ``job_keys`` attribute, the span attribute keys of which a span must carry at
least one to be a job run (:func:`job_keys_of`); the collector then builds no record for other spans.
"""

from __future__ import annotations

import os

from otel_datasink.profiles.airflow import airflow_profile, airflow_task_run_id
from otel_datasink.profiles.base import Profile, ProfileError, default_profile, job_keys_of
from otel_datasink.profiles.cicd import cicd_profile
from otel_datasink.profiles.mapping_file import COLUMN_ATTRIBUTES, MappingFileProfile, load_mapping_file

__all__ = [
    "BUILTIN_PROFILES",
    "COLUMN_ATTRIBUTES",
    "DEFAULT_PROFILE",
    "MappingFileProfile",
    "Profile",
    "ProfileError",
    "airflow_profile",
    "airflow_task_run_id",
    "cicd_profile",
    "default_profile",
    "job_keys_of",
    "load_mapping_file",
    "load_profile",
]

DEFAULT_PROFILE: Profile = default_profile

BUILTIN_PROFILES: dict[str, Profile] = {
    "default": default_profile,
    "airflow": airflow_profile,
    "cicd": cicd_profile,
}


def load_profile(name_or_path: str | os.PathLike | None) -> Profile:
    """The profile named by an option or ``OTEL_EXPORTER_DATASINK_PROFILE``: a built-in name or a TOML file.

    Raises :class:`ProfileError` (a ValueError) for an unknown name or an invalid mapping file, so that a
    bad setting stops the processor, exporter, collector or replay when it starts.
    """
    if name_or_path is None:
        return DEFAULT_PROFILE
    text = os.fspath(name_or_path).strip()
    if text == "":
        return DEFAULT_PROFILE
    builtin = BUILTIN_PROFILES.get(text.lower())
    if builtin is not None:
        return builtin
    if text.endswith(".toml") or os.path.exists(text):
        return load_mapping_file(text)
    raise ProfileError(
        f"unknown mapping profile {text!r} (known: {', '.join(BUILTIN_PROFILES)}, or the path of a .toml mapping file)"
    )
