"""Real small or read-only disks for the tests: a tmpfs mounted for the duration (needs root or CAP_SYS_ADMIN)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_MS_RDONLY, _MS_REMOUNT, _MNT_DETACH = 1, 32, 2


def _mount(source: bytes, path: Path, flags: int, data: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source, os.fsencode(path), b"tmpfs", flags, data.encode()) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            pytest.skip("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN)")
        raise OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created) for the duration: a real small or read-only disk (as
    root, a chmod stops no write). Skipped only where mounting is denied; never left mounted after the test."""
    path.mkdir(exist_ok=True)
    _mount(b"tmpfs", path, _MS_RDONLY if read_only else 0, f"size={size}")
    try:
        yield path
    finally:
        # Lazily if a file is still open, so that no mount outlives the test.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(os.fsencode(path), 0) != 0:
            libc.umount2(os.fsencode(path), _MNT_DETACH)


def remount_read_only(path: Path, size: str = "1m") -> None:
    """Makes a :func:`tmpfs` read-only, with what it holds."""
    _mount(b"tmpfs", path, _MS_REMOUNT | _MS_RDONLY, f"size={size}")
