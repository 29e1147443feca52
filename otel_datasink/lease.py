"""One holder at a time of a location's job: one alert evaluation (it would notify twice), one compaction (it would
store rows twice).

:func:`hold` keeps the location's :class:`Lock` for a block, or raises :class:`Busy` at once (or after ``wait``
seconds) when another process holds it:

- A local folder: an exclusive ``fcntl.flock`` on ``<location>/<lock name>`` (the kernel releases it when the
  process dies, so a crash never leaves it held).
- S3 (any fsspec store but a local folder): a lease object ``<location>/<lock name>`` created with a conditional
  PUT (``If-None-Match: *``: of two processes, S3 lets one create it) holding its expiry; a lease past it (its
  holder crashed) is taken over with a PUT conditional on its ETag (``If-Match``), and released with a DELETE
  conditional on ours. While the block runs, a daemon thread renews it every ``lease / 3`` (a PUT with a new
  expiry, conditional on its ETag), so a block longer than ``lease`` is not taken over; a renewal that finds
  another holder's lease logs a warning and marks the :class:`Held` lost. AWS S3 and moto honour the conditions;
  an endpoint that ignores them (some S3-compatible stores) gets a best-effort lease: the lease is read back after
  the PUT and only its last writer proceeds, which narrows the race to the time between the two requests but does
  not close it. ``lease`` is how long a crashed holder's lease blocks the next ones.

The block gets a :class:`Held`: call its :meth:`~Held.check` (or :meth:`~Held.held`) before each step another
holder must not repeat (sending a notification, deleting a compaction's inputs). Lock names start with ``_``:
hidden from the tables' readers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from otel_datasink.config import Options
from otel_datasink.location import open_location
from otel_datasink.writer import Writer

_logger = logging.getLogger(__name__)

DEFAULT_LEASE = datetime.timedelta(minutes=10)
"""How long an S3 lease holds unless renewed or released: a crashed holder blocks the next ones at most this long.
A live holder renews it every :data:`RENEWALS_PER_LEASE`-th of it, however long it runs."""
RENEWALS_PER_LEASE = 3
"""An S3 lease is renewed every ``lease / 3``: a renewal that fails once (a network blip) still leaves a third of
the lease for the next one."""


@dataclasses.dataclass(frozen=True)
class Lock:
    """A location's lock for one kind of job, and how its messages name them."""

    name: str
    """The lock file (local) or lease object (S3) under the location: ``_alerts.lock``."""
    what: str
    """The job it guards, in messages: ``evaluation`` ("another evaluation holds ...")."""
    who: str
    """A holder, in messages: ``evaluator`` ("taken over by another evaluator")."""


class Busy(RuntimeError):
    """Another process holds the location's lock: this one must not do the job (it would do it twice)."""


class LeaseLost(Busy):
    """Another process took over this one's S3 lease while it ran: it must stop (the other one does the job now)."""


class Held:
    """A lock as its block holds it: a local flock holds until the block ends; an S3 lease may be lost (taken over
    by another holder after a renewal failed to reach S3 for a whole lease)."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = what
        self._lost = threading.Event()

    def held(self) -> bool:
        """Whether the lock is still ours: check it before each step that must not be done twice."""
        return not self._lost.is_set()

    def check(self) -> None:
        """Raises :class:`LeaseLost` when the lock is no longer ours."""
        if self._lost.is_set():
            raise LeaseLost(f"another {self.what} took over the lease {self.where} while this one ran")

    def lose(self) -> None:
        """Marks the lock as lost (by the S3 lease's renewal, when it finds another holder's lease)."""
        self._lost.set()


@contextlib.contextmanager
def hold(
    where: Writer | Options | str | os.PathLike,
    lock: Lock,
    *,
    wait: float = 0.0,
    lease: datetime.timedelta = DEFAULT_LEASE,
    **options: Any,
) -> Iterator[Held]:
    """Holds ``lock`` of the location for the block; raises :class:`Busy` when another process holds it for longer
    than ``wait`` seconds (0 by default: a job under cron skips or fails a round, it does not queue behind a slow
    one). An S3 request that fails while the lease is taken raises an OSError naming the lease and the cause.

    ``where`` is the location (with ``options`` of :class:`~otel_datasink.config.Options`), its Options, or a
    Writer of it.
    """
    fs, root = _open(where, options)
    path = f"{root}/{lock.name}"
    if isinstance(fs, LocalFileSystem):
        with _flock(path, lock, wait):
            yield Held(path, lock.what)
    else:
        with _s3_lease(fs, path, lock, wait, lease) as held:
            yield held


def _open(where: Writer | Options | str | os.PathLike, options: dict[str, Any]) -> tuple[AbstractFileSystem, str]:
    if isinstance(where, Writer):
        return where.fs, where.root
    resolved = where if isinstance(where, Options) else Options.resolve(os.fspath(where), **options)
    return open_location(resolved)


@contextlib.contextmanager
def _flock(path: str, lock: Lock, wait: float) -> Iterator[None]:
    """An exclusive flock on ``path`` (created with its folder), tried until ``wait`` seconds have passed."""
    import fcntl  # POSIX only; imported here so that the module loads elsewhere

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # a read-only disk, a folder not ours: say which file, in words
        raise OSError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    _logger.info("another %s holds %s", lock.what, path)
                    raise Busy(f"another {lock.what} holds {path}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        # The file stays: removing it would let a third process lock a new file while the second holds the old.
        os.close(fd)


@contextlib.contextmanager
def _s3_lease(fs: AbstractFileSystem, path: str, lock: Lock, wait: float, lease: datetime.timedelta) -> Iterator[Held]:
    """A lease object at ``path`` (``bucket/key``) for the block, tried until ``wait`` seconds have passed, and
    renewed while the block runs."""
    bucket, key = path.split("/", 1)
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while True:
        try:
            etag = _take_lease(fs, bucket, key, owner, lock, lease)
        except OSError as error:
            # s3fs words some failures without the object ("Access Denied"): say which request failed.
            raise OSError(f"cannot take the lease s3://{path}: {error}") from error
        if etag is not None:
            break
        if time.monotonic() >= deadline:
            _logger.info("another %s holds the lease s3://%s", lock.what, path)
            raise Busy(f"another {lock.what} holds the lease s3://{path}{_until(fs, bucket, key)}")
        time.sleep(0.2)
    keeper = _LeaseKeeper(fs, bucket, key, owner, etag, lock, lease)
    keeper.start()
    try:
        yield keeper.held
    finally:
        # Stopped (and joined) first: a renewal in flight would otherwise change the ETag the release is on.
        _release_lease(fs, bucket, key, owner, lock, keeper.stop())


def _until(fs: Any, bucket: str, key: str) -> str:
    """`` (until <instant> ...)`` of another holder's lease: how long a crashed holder blocks the next ones."""
    try:
        holder, _ = _read_lease(fs, bucket, key)
        expires = datetime.datetime.fromtimestamp(float((holder or {})["expires"]), tz=datetime.timezone.utc)
    except (OSError, KeyError, TypeError, ValueError, OverflowError):
        return ""  # released meanwhile, unreadable, or not ours to read: the line says no more
    return f" (until {expires:%Y-%m-%d %H:%M:%S} UTC unless its holder renews it)"


class _LeaseKeeper:
    """Renews an S3 lease every ``lease / RENEWALS_PER_LEASE`` in a daemon thread until :meth:`stop`; marks its
    :class:`Held` lost, and stops renewing, when another process holds the lease."""

    def __init__(
        self, fs: Any, bucket: str, key: str, owner: str, etag: str, lock: Lock, lease: datetime.timedelta
    ) -> None:
        self.fs, self.bucket, self.key, self.owner, self.lock, self.lease = fs, bucket, key, owner, lock, lease
        self.etag = etag
        self.held = Held(f"s3://{bucket}/{key}", lock.what)
        self._stop = threading.Event()
        # A daemon: a process that exits without leaving the block (os._exit, a crash) is not kept alive by it.
        self._thread = threading.Thread(target=self._run, name=f"{lock.what}-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> str:
        """Stops renewing; the lease's latest ETag (what the release is conditional on)."""
        self._stop.set()
        self._thread.join()
        return self.etag

    def _run(self) -> None:
        period = self.lease.total_seconds() / RENEWALS_PER_LEASE
        while not self._stop.wait(period):
            try:
                if not self._renew():
                    return
            except Exception as error:  # noqa: BLE001 - S3 unreachable for now: the lease has time left, try again
                _logger.warning(
                    "could not renew the %s lease s3://%s/%s: %s", self.lock.what, self.bucket, self.key, error
                )

    def _renew(self) -> bool:
        """Extends the lease by ``lease`` from now; False (and the Held lost) when another process holds it."""
        # Read first: an endpoint ignoring If-Match would otherwise let us overwrite a lease taken over from us.
        # The ETag read (not the one we kept) is the condition: a renewal whose answer was lost changed it.
        holder, etag = _read_lease(self.fs, self.bucket, self.key)
        if holder is None or holder.get("owner") != self.owner:
            return self._lost()
        body = _lease_body(self.owner, self.lease)
        try:
            self.etag = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, IfMatch=etag)["ETag"]
        except OSError as error:
            if _precondition_failed(error):  # taken over between our read and our PUT
                return self._lost()
            raise
        return True

    def _lost(self) -> bool:
        _logger.warning(
            "the %s lease s3://%s/%s was taken over by another %s while this one ran "
            "(it expired before a renewal reached S3): this %s must stop",
            self.lock.what,
            self.bucket,
            self.key,
            self.lock.who,
            self.lock.what,
        )
        self.held.lose()
        return False


def _lease_body(owner: str, lease: datetime.timedelta) -> bytes:
    expires = time.time() + lease.total_seconds()
    return json.dumps({"owner": owner, "expires": expires, "pid": os.getpid()}).encode()


def _take_lease(fs: Any, bucket: str, key: str, owner: str, lock: Lock, lease: datetime.timedelta) -> str | None:
    """Creates the lease, or takes over an expired one; its ETag, or None when another process holds it."""
    try:
        etag = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=_lease_body(owner, lease), IfNoneMatch="*")["ETag"]
    except OSError as error:
        if not _precondition_failed(error):
            raise
        etag = _take_over(fs, bucket, key, owner, lock, lease)
        if etag is None:
            return None
    # Read back: an endpoint that ignored the condition let every writer "create" it; the last one holds it.
    holder, _ = _read_lease(fs, bucket, key)
    return etag if holder is not None and holder.get("owner") == owner else None


def _take_over(fs: Any, bucket: str, key: str, owner: str, lock: Lock, lease: datetime.timedelta) -> str | None:
    """Takes over an expired lease (its holder crashed) with a PUT on its ETag; None while it holds."""
    holder, etag = _read_lease(fs, bucket, key)
    if holder is None:  # released between our PUT and this read: try again at the next round
        return None
    if float(holder.get("expires", 0)) > time.time():
        return None
    _logger.warning("the %s lease s3://%s/%s expired (its %s died?): taking it over", lock.what, bucket, key, lock.who)
    try:
        return fs.call_s3("put_object", Bucket=bucket, Key=key, Body=_lease_body(owner, lease), IfMatch=etag)["ETag"]
    except OSError as error:
        if _precondition_failed(error):  # another process took it over first
            return None
        raise


def _read_lease(fs: Any, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The lease's content and ETag, or (None, None) when there is none."""
    # s3fs's cat_file sizes the object from its cached listings first: one listed before the lease was created
    # (compaction lists the location before it locks) would say the lease does not exist.
    fs.invalidate_cache(f"{bucket}/{key}")
    try:
        head = fs.call_s3("head_object", Bucket=bucket, Key=key)
        body = fs.cat_file(f"{bucket}/{key}")
    except FileNotFoundError:
        return None, None
    try:
        content = json.loads(body)
    except ValueError:
        content = {}  # not ours to read: treated as expired
    return (content if isinstance(content, dict) else {}), head["ETag"]


def _release_lease(fs: Any, bucket: str, key: str, owner: str, lock: Lock, etag: str) -> None:
    """Deletes our lease, unless another process took it over (ours expired while we ran)."""
    try:
        fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
    except OSError as error:
        if _precondition_failed(error):
            _logger.warning("the %s lease s3://%s/%s expired while this %s ran", lock.what, bucket, key, lock.what)
            return
        # An endpoint without conditional deletes: delete it if it is still ours.
        holder, _ = _read_lease(fs, bucket, key)
        if holder is not None and holder.get("owner") == owner:
            fs.call_s3("delete_object", Bucket=bucket, Key=key)
    finally:
        fs.invalidate_cache(f"{bucket}/{key}")


def _precondition_failed(error: OSError) -> bool:
    """Whether S3 refused a conditional request (412 PreconditionFailed, or 409 ConditionalRequestConflict when
    two conditional writes race): s3fs raises FileExistsError for some, a plain OSError for others."""
    if isinstance(error, FileExistsError):
        return True
    text = f"{error} {error.__cause__!r}"
    return any(code in text for code in ("PreconditionFailed", "pre-condition", "ConditionalRequestConflict"))
