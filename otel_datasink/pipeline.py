"""Options -> profile -> writer: how every front door (processor, exporter, collector, replay) opens its pipeline.

One place, so that the four check their settings alike and at the same moment: when they start. A profile that
cannot be loaded (an unknown name, a mapping file with a mistake) raises :class:`~otel_datasink.profiles.ProfileError`
there, before a span is taken, and the location is opened (not yet written to) before the first write.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from otel_datasink.config import Options
from otel_datasink.profiles import Profile, job_keys_of, load_profile
from otel_datasink.writer import Writer


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What a front door maps and writes with: its options, the profile they name, a writer at their location."""

    options: Options
    profile: Profile
    writer: Writer

    @classmethod
    def open(cls, options: Options) -> Pipeline:
        """Loads the profile ``options`` name (raises ProfileError) and opens a writer at their location."""
        profile = load_profile(options.profile)
        return cls(options, profile, Writer(options))

    @classmethod
    def resolve(cls, location: str | os.PathLike | None = None, **options: Any) -> Pipeline:
        """:meth:`open` with ``Options.resolve(location, **options)``: what is not given comes from the
        ``OTEL_EXPORTER_DATASINK_*`` environment variables."""
        return cls.open(Options.resolve(location, **options))

    @property
    def job_keys(self) -> frozenset[str] | None:
        """The profile's job keys (:func:`~otel_datasink.profiles.job_keys_of`)."""
        return job_keys_of(self.profile)

    def with_profile(self, profile: Profile) -> Pipeline:
        """The same pipeline mapping with ``profile`` (replay's ``--run-type`` wraps the loaded one)."""
        return dataclasses.replace(self, profile=profile)
