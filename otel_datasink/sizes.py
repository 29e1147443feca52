"""Sizes in bytes as people write and read them: ``128MB`` read (``compact --target-size``), ``24.3 MiB`` written
(what ``compact`` and ``report`` say they wrote). Binary units both ways: 1 MB = 1 MiB = 1024 KiB."""

from __future__ import annotations

import re

_READ = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_WRITTEN = ("B", "KiB", "MiB", "GiB", "TiB")


def parse_size(text: str) -> int:
    """Bytes of a size such as ``128MB``, ``128MiB``, ``1G`` or ``4096``; ValueError for anything else, or a size
    that is not positive."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMG]?)I?B?)\s*", text.upper())
    if match is None:
        raise ValueError(f"not a size: {text!r} (e.g. 128MB, 1GB)")
    size = int(float(match.group(1)) * _READ[match.group(2)])
    if size <= 0:
        raise ValueError("the size must be positive")
    return size


def human_size(size: float) -> str:
    """``25436648`` as ``24.3 MiB``."""
    for unit in _WRITTEN[:-1]:
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_WRITTEN[-1]}"
