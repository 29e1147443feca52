"""Mapping profiles: which spans are job runs, and how their attributes read in the contract's conventions.

A profile is a callable ``SpanRecord -> SpanRecord | Sequence[SpanRecord] | None``: None for a span that is not a
job run, else the span rewritten so that the one mapping (:func:`otel_datasink.mapping.map_records`) reads it: the
contract's attributes (``job.name``, ``job.run.attempt``, ...) are added, the span's own attributes are kept
(they land in the ``attributes`` column), and the status may be set from a state attribute. A span that reports
several runs is rewritten into one record per run (a retried Prefect task: one per try, :mod:`.prefect`), which
the one mapping turns into a row each.

Every producer is recognised at once by default, each by its own signature, so one collector takes a whole
platform: a span with ``job.name`` is the contract's and taken as it says (whatever else it carries); then
Airflow's own DAG-run and task spans (:mod:`.airflow`, by their DAG id attributes), Prefect 3's flow-run and
task-run spans (:mod:`.prefect`, by ``prefect.run.type``) and the OpenTelemetry CI/CD conventions (:mod:`.cicd`, by
``cicd.pipeline.*``). A span no producer recognises is never a run.

The ``profile`` option (``--profile``, ``OTEL_EXPORTER_DATASINK_PROFILE``) is a comma-separated list of built-in
names and TOML mapping files (:mod:`.mapping_file`):

- ``default`` (or unset): every built-in producer: ``contract``, ``airflow``, ``prefect``, ``cicd``;
- one or more names narrow to those producers: ``contract`` (only spans with ``job.name``), ``airflow``,
  ``prefect``, ``cicd``, e.g. ``airflow,cicd``;
- a mapping file *adds* its rules to the built-ins: ``rules.toml`` maps with its rules first, then every
  built-in producer; with names beside it, only those: ``contract,rules.toml`` is the file's rules and the
  contract's spans alone.

Every built-in profile also takes spans that already follow the contract, so a job that sets ``job.name`` itself
is recorded whichever profile runs. A profile is loaded, and a mapping file checked, when the processor,
exporter, collector or replay starts: a bad profile fails there, never while spans are exported.

A profile may declare, as its ``job_keys`` attribute, the span attribute keys of which a span must carry at
least one to be a job run (:func:`job_keys_of`); the collector then builds no record for other spans. The
producers' profile (:func:`producers`) declares the union of its producers' keys, so recognising every producer
keeps that fast path, and shows a span only to the producers whose keys it carries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from otel_datasink.mapping import MappedSpan, SpanRecord
from otel_datasink.profiles.airflow import airflow_profile, airflow_task_run_id
from otel_datasink.profiles.base import Profile, ProfileError, default_profile, job_keys_of
from otel_datasink.profiles.cicd import cicd_profile
from otel_datasink.profiles.mapping_file import COLUMN_ATTRIBUTES, MappingFileProfile, load_mapping_file
from otel_datasink.profiles.prefect import prefect_profile

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
    "prefect_profile",
    "producers",
]


def producers(profiles: Sequence[Profile]) -> Profile:
    """Several profiles as one: the first that takes a span maps it, in the order given.

    A span is shown only to the profiles whose job keys it carries (a profile without job keys sees every span),
    so recognising several producers costs a set test per producer, not a profile call, and a span of none of
    them one set test; its ``job_keys`` are the union of theirs (None when one of them has none). A plain
    function, not a callable object: it is called once per span.
    """
    keys = [job_keys_of(profile) for profile in profiles]
    union = None if any(key is None for key in keys) else frozenset().union(*(key for key in keys if key is not None))
    dispatch = tuple(zip(keys, profiles, strict=True))

    def first_taking(record: SpanRecord) -> MappedSpan:
        attributes = record.attributes
        # Most spans are no producer's run (a job's reads, queries, HTTP calls): one set test for them all.
        if union is not None and union.isdisjoint(attributes):
            return None
        for needed, profile in dispatch:
            if needed is None or not needed.isdisjoint(attributes):
                mapped = profile(record)
                if mapped:  # a record, or records
                    return mapped
        return None

    first_taking.job_keys = union  # type: ignore[attr-defined]
    return first_taking


BUILTIN_PROFILES: dict[str, Profile] = {
    "contract": default_profile,
    "airflow": airflow_profile,
    "prefect": prefect_profile,
    "cicd": cicd_profile,
}
"""The built-in producers, each a profile of its own (``--profile airflow`` narrows to one), in the order the
default tries them: the contract's spans first."""

DEFAULT_PROFILE: Profile = producers(tuple(BUILTIN_PROFILES.values()))
"""Every built-in producer at once: the profile when none is named (or ``default`` is)."""


def load_profile(name_or_path: str | os.PathLike | None) -> Profile:
    """The profile named by an option or ``OTEL_EXPORTER_DATASINK_PROFILE``: a comma-separated list of built-in
    names and TOML mapping files (see the module's docstring).

    Raises :class:`ProfileError` (a ValueError) for an unknown name or an invalid mapping file, so that a
    bad setting stops the processor, exporter, collector or replay when it starts.
    """
    text = "" if name_or_path is None else os.fspath(name_or_path).strip()
    parts = [part.strip() for part in text.split(",") if part.strip()] if text else []
    files: list[Profile] = []
    names: list[str] = []
    for part in parts:
        name = part.lower()
        if name == "default":
            names.extend(BUILTIN_PROFILES)
        elif name in BUILTIN_PROFILES:
            names.append(name)
        elif part.endswith(".toml") or os.path.exists(part):
            files.append(load_mapping_file(part))
        else:
            raise ProfileError(
                f"unknown mapping profile {part!r} (known: default, {', '.join(BUILTIN_PROFILES)}, or the path of a "
                ".toml mapping file; several separated by commas)"
            )
    if not files and (not names or set(names) == set(BUILTIN_PROFILES)):
        return DEFAULT_PROFILE
    # A mapping file adds to the built-ins unless names narrow them; its rules come first.
    builtins = [BUILTIN_PROFILES[name] for name in dict.fromkeys(names or BUILTIN_PROFILES)]
    profiles = [*files, *builtins]
    return profiles[0] if len(profiles) == 1 else producers(profiles)
