"""Sending notifications: to any Apprise URL (Slack, Teams, Discord, e-mail, PagerDuty, webhooks, ...) and to
Prometheus Alertmanager's v2 API.

A target is one string, as ``--notify`` and the rules file give it:

- ``alertmanager://HOST[:PORT][/PREFIX]`` (plain HTTP) or ``alertmanagers://...`` (HTTPS): Alertmanager, which
  gets ``POST [PREFIX]/api/v2/alerts``; the port defaults to 9093. Basic auth as ``alertmanager://USER:PASS@HOST``,
  a bearer token as ``?token=TOKEN``; ``?verify=no`` skips TLS certificate checks (a self-signed Alertmanager);
  ``?every=1h`` says how often evaluations run when they are not ``--watch``'s (cron): a FIRING alert then ends a
  little after the next one is due unless posted again (Alertmanager's ``resolve_timeout``, 5 min by default,
  would resolve it in between). An ``http(s)://`` URL ending in ``/api/v2/alerts`` is taken as Alertmanager too.
- anything else: an Apprise URL (``slack://T/B/C``, ``msteams://...``, ``mailto://...``, ``json://host/path``);
  see https://github.com/caronc/apprise/wiki. Apprise comes with the ``alerts`` extra.

:func:`send` raises :class:`~.model.DeliveryError` (one line, saying what failed: for Apprise, its warning and the
exception behind it, ``[Errno 111] Connection refused``) when a target does not take the notifications, and
returns within ``timeout`` seconds whatever the target does. :func:`redact` is the target as it may be stored and
logged; :func:`wants_every_evaluation` says whether a target must be told of a FIRING incident at every evaluation.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import datetime
import ipaddress
import json
import logging
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ..extras import MissingExtraError, import_extra
from .escaping import TEXT, Format, format_of, one_line, text_lines
from .model import FIRING, RESOLVED, DeliveryError, Notification, age

SOURCE = "otel-datasink"
"""The ``source`` label of Alertmanager alerts, and the name digests are titled with."""
ALERTMANAGER_SCHEMES = {"alertmanager": "http", "alertmanagers": "https"}
"""Target scheme -> the HTTP scheme Alertmanager is reached with."""
ALERTMANAGER_PORT = 9093
ALERTMANAGER_API = "/api/v2/alerts"
MASK = "***"
ERROR_HEAD = 4
ERROR_TAIL = 8
"""Lines of a last error message a message keeps: the first ones and the last ones (see :func:`last_error`)."""
DEFAULT_TIMEOUT = 10.0
"""Seconds a delivery to one target may take, unless told otherwise (``alert --timeout``)."""
LINE_CHARS = 300
CAUSE_CHARS = 300
"""A DeliveryError message is cut here: it goes into logs and the alerts table."""

_SECRET_NAME = re.compile(r"(token|key|secret|pass|pwd|auth|sig|bearer|code|credential|session|webhook)", re.I)
"""Query parameters whose value is a secret, by name (``?token=``, ``?apikey=``, ``?password=``, ``?sig=``...)."""

T = TypeVar("T")


# --- targets ---------------------------------------------------------------------------------------------------


def is_alertmanager(target: str) -> bool:
    """Whether ``target`` names an Alertmanager (see the module's docstring), not an Apprise URL."""
    parts = urllib.parse.urlsplit(target.strip())
    scheme = parts.scheme.lower()
    if scheme in ALERTMANAGER_SCHEMES:
        return True
    return scheme in ("http", "https") and parts.path.rstrip("/").endswith(ALERTMANAGER_API)


def wants_every_evaluation(target: str) -> bool:
    """True for Alertmanager targets: they must get every FIRING incident at every evaluation.

    Alertmanager dedupes, groups, silences and re-notifies by itself, and resolves an alert that is not posted
    again before its ``endsAt`` (or its ``resolve_timeout``): a suppression interval would make it resolve
    incidents that are still open. Apprise targets are told once, then again after the suppression interval.
    """
    return is_alertmanager(target)


def _looks_secret(piece: str) -> bool:
    """Whether a path segment, host or value looks like a token: long, or of some length with digits in it.

    Apprise URLs carry their credentials as path segments (``slack://TOKEN_A/TOKEN_B/TOKEN_C``,
    ``discord://ID/TOKEN``, ``mmost://host/TOKEN``), in a different place per service; tokens are random strings,
    so they are told from words (``hooks``, ``services``, ``api``, ``v2``, ``#alerts``) by their shape.
    """
    piece = urllib.parse.unquote(piece)
    if not piece or piece[0] in "#@!+":  # a channel, a user, a tag: where to post, not a credential
        return False
    return len(piece) >= 24 or (len(piece) >= 8 and any(c.isdigit() for c in piece))


def _is_hostname(host: str) -> bool:
    """Whether ``host`` names a machine (``hooks.slack.com``, ``localhost``, an address) rather than holding a
    token in the host position, as ``slack://TOKEN_A/...`` and ``tgram://BOT_TOKEN/...`` do."""
    if host == "localhost" or "." in host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host(hostport: str) -> str:
    """The host of ``host:port``, ``[v6::address]:port`` or a bare host."""
    if hostport.startswith("[") and "]" in hostport:
        return hostport[1 : hostport.index("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def _secrets(target: str) -> list[str]:
    """The pieces of ``target`` that :func:`redact` masks, longest first."""
    parts = urllib.parse.urlsplit(target.strip())
    found: list[str] = []
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = _host(hostport)
    user, colon, password = userinfo.partition(":")
    if colon and password:
        found.append(password)
    if not _is_hostname(host):
        # The "host" is a token (slack://TOKEN_A/...); a user before it is one too (pagerduty://KEY@KEY).
        found += [piece for piece in (user, hostport) if piece and _looks_secret(piece)]
    found += [segment for segment in parts.path.split("/") if _looks_secret(segment)]
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if value and (_SECRET_NAME.search(name) or _looks_secret(value)):
            found.append(urllib.parse.quote(value, safe=""))
            found.append(value)
    return sorted({piece for piece in found if piece}, key=len, reverse=True)


def redact(target: str) -> str:
    """``target`` with its secrets replaced by ``***``: what may be stored in the ``alerts`` table and logged.

    Masked: a password (``user:***@host``), query values named like secrets (``?token=***``, ``?apikey=***``)
    or shaped like tokens, and path segments (or a host position) shaped like tokens (see :func:`_looks_secret`):
    ``slack://***/***/***/#alerts``, ``discord://***/***``, ``json://user:***@host/hook/***``.
    """
    parts = urllib.parse.urlsplit(target.strip())
    if parts.scheme and parts.netloc:
        return _redact_url(parts)
    return _scrub(target.strip(), target)


def _scrub(text: str, target: str) -> str:
    """``text`` (a message about ``target``) with the target's secrets masked."""
    text = text.replace(target.strip(), redact(target)) if urllib.parse.urlsplit(target).netloc else text
    for secret in _secrets(target):
        text = text.replace(secret, MASK)
    return text


def _redact_url(parts: urllib.parse.SplitResult) -> str:
    """A parsed target rebuilt piece by piece with its secrets masked (a replace of the raw string could also hit
    a host name or a word that happens to equal a secret)."""
    secrets = set(_secrets(urllib.parse.urlunsplit(parts)))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    host = _host(hostport)
    if not _is_hostname(host):
        user = MASK if user in secrets else user
        hostport = MASK if hostport in secrets else hostport
    netloc = f"{user}{colon}{MASK if password else ''}{at}{hostport}"
    path = "/".join(MASK if segment in secrets else segment for segment in parts.path.split("/"))
    query = "&".join(_redact_parameter(piece, secrets) for piece in parts.query.split("&")) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _redact_parameter(piece: str, secrets: set[str]) -> str:
    """One ``name=value`` of a query string, its value masked when it is a secret (its encoding otherwise kept)."""
    name, equals, value = piece.partition("=")
    return f"{name}{equals}{MASK}" if value and urllib.parse.unquote_plus(value) in secrets else piece


# --- message content -------------------------------------------------------------------------------------------


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken as UTC, as the tables store them)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _when(moment: datetime.datetime, now: datetime.datetime) -> str:
    """``2026-11-28 21:00 UTC (2 h 45 min ago)``: the age as every age of a message (:func:`.model.age`)."""
    moment = _utc(moment)
    return f"{moment:%Y-%m-%d %H:%M} UTC ({age(now - moment)} ago)"


def _since(notification: Notification) -> datetime.datetime:
    """Since when the incident's condition holds: the condition's own ``since`` (what its summary says), else when
    the incident opened."""
    since = notification.details.get("since")
    if isinstance(since, str):
        try:
            return _utc(datetime.datetime.fromisoformat(since))
        except ValueError:
            pass
    return notification.opened_at


def title(notification: Notification, form: Format = TEXT) -> str:
    """``[FIRING] stale_dataset orders (critical)``, with ``reminder`` after it when the incident was told before;
    the subject on this line, escaped for ``form`` (see :mod:`.escaping`)."""
    subject = form.inline(notification.subject)
    line = f"[{notification.state}] {notification.kind} {subject} ({notification.severity})"
    return f"{line} reminder" if notification.reminder else line


def _minutes(value: Any) -> str:
    """Minutes as every age of a message shows them (:func:`.model.age`): ``45 min``, ``3 h 5 min``, ``219 d``."""
    return age(float(value))


def how_bad(details: dict[str, Any]) -> str:
    """The measures of a condition, in words (the details the conditions give each kind): freshness vs SLA,
    failure streak, how long a run hangs, volume vs its baseline and z-score, the expected interval."""
    d = {key: value for key, value in details.items() if value is not None}
    facts: list[str] = []
    if "freshness_minutes" in d:
        sla = f" (SLA {_minutes(d['freshness_sla_minutes'])})" if "freshness_sla_minutes" in d else ""
        facts.append(f"data {_minutes(d['freshness_minutes'])} old{sla}")
    elif "freshness_sla_minutes" in d:
        facts.append(f"no successful update (SLA {_minutes(d['freshness_sla_minutes'])})")
    if "current_streak" in d:
        facts.append(f"{d['current_streak']} failed runs in a row")
    if "recent_failures" in d:
        of = f" of {d['recent_runs']} runs" if "recent_runs" in d else ""
        facts.append(f"{d['recent_failures']} failures{of} in 7 days")
    if "running_minutes" in d:
        after = f" (hung after {_minutes(d['threshold_minutes'])})" if "threshold_minutes" in d else ""
        facts.append(f"running for {_minutes(d['running_minutes'])}{after}")
    if d.get("hung_runs", 1) > 1:
        facts.append(f"{d['hung_runs']} runs hung")
    if "records_processed" in d:
        fact = f"{d['records_processed']} records"
        if "baseline_mean" in d:
            spread = f" ± {float(d['baseline_stddev']):.0f}" if "baseline_stddev" in d else ""
            runs = f" over {d['baseline_runs']} runs" if "baseline_runs" in d else ""
            fact += f" vs a mean of {float(d['baseline_mean']):.0f}{spread}{runs}"
        facts.append(fact)
    if "z_score" in d:
        facts.append(f"z-score {float(d['z_score']):+.1f}")
    if "expected_every_minutes" in d:
        facts.append(f"expected every {_minutes(d['expected_every_minutes'])}")
    return "; ".join(facts)


def last_error(details: dict[str, Any]) -> str:
    """The last error as ``Type: message``, its lines kept as lines: the first :data:`ERROR_HEAD` and the last
    :data:`ERROR_TAIL` (a traceback's head says where it started, its tail what went wrong), each cut to
    :data:`LINE_CHARS`, saying how many were left out. Each line is :func:`~.escaping.one_line` (its control
    characters shown as such): a line break of any kind starts a line here, which :func:`body` indents."""
    kind = details.get("last_error_type") or details.get("error_type")
    message = details.get("last_error_message") or details.get("error_message")
    if not kind and not message:
        return ""
    text = f"{kind}: {message}" if kind and message else str(kind or message)
    lines = [line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…" for line in text_lines(text)]
    if len(lines) > ERROR_HEAD + ERROR_TAIL:
        cut = len(lines) - ERROR_HEAD - ERROR_TAIL
        lines = [*lines[:ERROR_HEAD], f"… ({cut} lines left out)", *lines[-ERROR_TAIL:]]
    return "\n".join(lines)


def body(notification: Notification, now: datetime.datetime | None = None, form: Format = TEXT) -> str:
    """The text of one notification: summary, since when, how bad, last error, owners, links.

    Every age and ``... ago`` is at ``now`` (the evaluation's instant), the since of the summary's condition.
    Every line starts with words of ours; user text (the summary, the error, ids) is escaped for ``form`` and kept
    on its line, the error's further lines indented (see :mod:`.escaping`). Owners and links are the operator's
    (the rules, the templates, whose fields are encoded) and go as they are: an owner may be a mention.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    lines = [form.inline(notification.summary)]
    lines.append(f"Since: {_when(_since(notification), now)}")
    if notification.state == RESOLVED:
        lines.append(f"Resolved: {_when(notification.resolved_at or now, now)}")
        if notification.details.get("closed"):  # closed for another reason than its condition clearing
            lines.append(f"Closed: {notification.details['closed']}")
    measures = how_bad(notification.details)
    if measures:
        lines.append(f"How bad: {measures}")
    error = last_error(notification.details)
    if error:
        error_lines = [form.escape(line) for line in error.splitlines()]
        lines.append(f"Last error: {error_lines[0]}")
        lines += [f"    {line}" for line in error_lines[1:]]
    for name in ("run_id", "trace_id"):
        if notification.details.get(name):
            lines.append(f"{name}: {form.inline(notification.details[name])}")
    if notification.owners:
        lines.append(f"Owners: {', '.join(notification.owners)}")
    lines += [f"{name}: {url}" for name, url in notification.links.items()]
    lines.append(f"Incident: {notification.incident_id}")
    return "\n".join(lines)


def digest_title(notifications: Sequence[Notification]) -> str:
    """``[otel-datasink] 3 alerts: 2 firing, 1 resolved``."""
    firing = sum(1 for n in notifications if n.state == FIRING)
    counts = [f"{firing} firing"] if firing else []
    if len(notifications) - firing:
        counts.append(f"{len(notifications) - firing} resolved")
    return f"[{SOURCE}] {len(notifications)} alerts: {', '.join(counts)}"


def digest_body(
    notifications: Sequence[Notification], now: datetime.datetime | None = None, form: Format = TEXT
) -> str:
    """One section per notification: its title, then its body."""
    return "\n\n".join(f"{title(n, form)}\n{body(n, now, form)}" for n in notifications)


# --- running within a deadline ---------------------------------------------------------------------------------


def _within(timeout: float, call: Callable[[], T], what: str) -> T:
    """``call()`` in a daemon thread, and its result; a DeliveryError after ``timeout`` seconds.

    The libraries' own timeouts bound each socket operation, not a whole delivery (a receiver trickling bytes,
    a plugin's throttling, retries): the thread is the bound. A thread that overruns is left to finish on its own
    (daemon: it never holds up the interpreter's exit).
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed over to the caller's thread, raised there
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"datasink-delivery-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DeliveryError(f"{what}: no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _one_line(text: str, target: str) -> str:
    """``text`` on one line, with the target's secrets masked, cut to :data:`CAUSE_CHARS`."""
    line = " ".join(_scrub(text, target).split())
    return line if len(line) <= CAUSE_CHARS else line[: CAUSE_CHARS - 1] + "…"


# --- Apprise ---------------------------------------------------------------------------------------------------


_capturing: contextvars.ContextVar[_DeliveryRecords | None] = contextvars.ContextVar("datasink_delivery", default=None)
"""The records of the delivery running in this context (Apprise 2 runs a service in its own worker thread, but
with a copy of the caller's context: a thread id would not follow it, a context variable does)."""


class _DeliveryRecords:
    """The messages Apprise logs for one delivery (warnings and errors: what it reports failures with), kept apart
    so that concurrent deliveries do not read each other's failures, and the exceptions behind them
    (:data:`_CAUSE`); :class:`_Causes` hands both over."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.causes: list[str] = []

    def cause(self) -> str:
        """What went wrong, in one string: the warnings, then the first exception behind them (its text without
        Apprise's ``Socket Exception:`` prefix and the ``<... object at 0x...>`` reprs that differ every time)."""
        said = "; ".join(dict.fromkeys(self.messages)) or "Apprise reported a failure and logged no cause"
        if not self.causes:
            return said
        behind = _OBJECT_REPR.sub("", _CAUSE.sub("", self.causes[0], count=1)).strip()
        # The OS's error, when there is one, is the point; urllib3 wraps it in a line that the cut would lose it in.
        errno = _ERRNO.search(behind)
        return f"{said} ({errno[0].strip() if errno else behind})"


_CAUSE = re.compile(r"^[A-Za-z][A-Za-z/ ]{0,40} Exception: ")
"""How Apprise's plugins log the exception behind a failure, at DEBUG level, after a warning in general words
(``A Connection error occurred sending JSON notification to HOST.`` then ``Socket Exception: HTTPConnectionPool(...):
... [Errno 111] Connection refused``; ``I/O Exception: ...``): the same prefix in every plugin."""
_OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-fA-F]+>:?\s*")
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\"()]*")
"""``[Errno 111] Connection refused``, ``[Errno -2] Name or service not known``: in the exception's text."""


class _Causes(logging.Filter):
    """A filter of the ``apprise`` logger while deliveries run, which lets its DEBUG records be made (the logger's
    level lowered) without anybody seeing them but the delivery: a delivery's warnings and exception lines
    (:data:`_CAUSE`) go to its records only (they are its DeliveryError's message, said once by whoever reports the
    failure, not logged too), and a record of no delivery below the level the logger had (its ``threshold``) goes
    no further, so the application's handlers get what they got before, and no payload Apprise logs at DEBUG."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        records = _capturing.get()
        if records is None:
            return record.levelno >= self.threshold
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            records.messages.append(message)
        elif _CAUSE.match(message):
            records.causes.append(message)
        return False


_causes_lock = threading.Lock()
_causes_users = 0
_causes_installed: tuple[_Causes, int] | None = None
"""The filter installed on the ``apprise`` logger, and the level it had before; shared by concurrent deliveries."""


@contextlib.contextmanager
def _apprise_causes(logger: logging.Logger) -> Iterator[None]:
    """Makes Apprise's exception lines reach the delivery's records for the block (see :class:`_Causes`): the first
    delivery lowers the logger's level to DEBUG and installs the filter, the last one restores them."""
    global _causes_users, _causes_installed
    with _causes_lock:
        if _causes_users == 0:
            causes = _Causes(threshold=logger.getEffectiveLevel())
            _causes_installed = (causes, logger.level)
            logger.addFilter(causes)
            if logger.getEffectiveLevel() > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
        _causes_users += 1
    try:
        yield
    finally:
        with _causes_lock:
            _causes_users -= 1
            if _causes_users == 0 and _causes_installed is not None:
                causes, level = _causes_installed
                logger.setLevel(level)
                logger.removeFilter(causes)
                _causes_installed = None


def _notify_type(notifications: Sequence[Notification]) -> str:
    """Apprise's colour/icon of a message: failure for critical, warning otherwise, success when all resolved."""
    if all(n.state == RESOLVED for n in notifications):
        return "success"
    if any(n.state == FIRING and n.severity == "critical" for n in notifications):
        return "failure"
    return "warning"


def _apprise_messages(
    notifications: Sequence[Notification], form: Format, now: datetime.datetime
) -> list[tuple[str, str, str]]:
    """(title, body, notify type) of each message, written in ``form``: one per notification, or one digest for
    several."""
    if len(notifications) == 1:
        (only,) = notifications
        return [(title(only, form), body(only, now, form), _notify_type(notifications))]
    return [(digest_title(notifications), digest_body(notifications, now, form), _notify_type(notifications))]


def _send_apprise(target: str, notifications: Sequence[Notification], timeout: float, now: datetime.datetime) -> None:
    """Delivers to an Apprise URL: one message, or one digest of several notifications."""
    apprise = import_extra("apprise", "alerts")
    records = _DeliveryRecords()
    logger = logging.getLogger("apprise")

    def deliver() -> bool:
        # This thread's own context: Apprise 1 logs from this thread (async_mode=False: no thread pool of its
        # own), Apprise 2 from workers it hands a copy of this context.
        _capturing.set(records)
        notifier = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
        if not notifier.add(target):
            records.messages.insert(0, "not a usable Apprise URL")
            return False
        for service in notifier:
            # Each socket operation within the timeout; _within bounds the whole.
            service.socket_connect_timeout = min(float(service.socket_connect_timeout), timeout)
            service.socket_read_timeout = min(float(service.socket_read_timeout), timeout)
        # Written in the format the target shows (Markdown escaped for a chat that renders it), and declared as
        # such: Apprise then converts it only where the target needs (text to HTML, with HTML escaping).
        form = format_of(notifier)
        for message_title, message_body, notify_type in _apprise_messages(notifications, form, now):
            if not notifier.notify(
                body=message_body, title=message_title, notify_type=notify_type, body_format=form.name
            ):
                return False
        return True

    # Apprise says what failed in general words ("A Connection error occurred ...") at WARNING, and the exception
    # ("Connection refused", a TLS error) only at DEBUG: without it the alerts rows would not say why.
    with _apprise_causes(logger):
        delivered = _within(timeout, deliver, "apprise")
    if not delivered:
        raise DeliveryError(_one_line(records.cause(), target))


# --- Alertmanager ----------------------------------------------------------------------------------------------


def _rfc3339(moment: datetime.datetime) -> str:
    """``2026-11-28T21:00:00.000Z``: what Alertmanager's API takes."""
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(
    notification: Notification,
    now: datetime.datetime,
    repeat: datetime.timedelta | None = None,
    told_at: datetime.datetime | None = None,
) -> dict[str, Any]:
    """One alert of Alertmanager's v2 API (``postableAlert``) for ``notification``.

    A FIRING alert ends a little after the next evaluation is due (``repeat`` after now, plus half of it, at
    least a minute), so that Alertmanager resolves it by itself if evaluations stop; with no ``repeat`` known,
    ``endsAt`` is left out and Alertmanager applies its ``resolve_timeout``. A RESOLVED one ends when the
    condition was seen to clear. ``told_at``: the instant its description's ages are at (the evaluation's; ``now``,
    the clock ``endsAt`` runs on, when not given).
    """
    links = notification.links
    # Alertmanager's templates put these in messages of their own: one-line text stays on one line there too.
    annotations = {"summary": one_line(notification.summary), "description": body(notification, told_at or now)}
    if notification.owners:
        annotations["owners"] = ", ".join(notification.owners)
    annotations |= {f"{name}_url": url for name, url in links.items()}
    alert: dict[str, Any] = {
        "labels": {
            "alertname": notification.kind,
            "subject": one_line(notification.subject),
            "severity": notification.severity,
            "incident_id": notification.incident_id,
            "source": SOURCE,
        },
        "annotations": annotations,
        "startsAt": _rfc3339(notification.opened_at),
    }
    if notification.state == RESOLVED:
        # Alertmanager refuses an alert ending before it starts.
        alert["endsAt"] = _rfc3339(max(_utc(notification.resolved_at or now), _utc(notification.opened_at)))
    elif repeat is not None:
        alert["endsAt"] = _rfc3339(now + repeat + max(repeat / 2, datetime.timedelta(minutes=1)))
    generator = links.get("run") or links.get("trace") or next(iter(links.values()), None)
    if generator:
        alert["generatorURL"] = generator
    return alert


def _alertmanager_request(target: str, payload: bytes) -> tuple[urllib.request.Request, ssl.SSLContext | None]:
    """The ``POST .../api/v2/alerts`` request for an Alertmanager target, and the TLS context it needs."""
    parts = urllib.parse.urlsplit(target.strip())
    query = dict(urllib.parse.parse_qsl(parts.query))
    scheme = ALERTMANAGER_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    port = parts.port or (ALERTMANAGER_PORT if parts.scheme.lower() in ALERTMANAGER_SCHEMES else None)
    path = parts.path.rstrip("/")
    if not path.endswith(ALERTMANAGER_API):
        path += ALERTMANAGER_API
    url = f"{scheme}://{host}{f':{port}' if port else ''}{path}"
    headers = {"Content-Type": "application/json", "User-Agent": SOURCE}
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    if query.get("token"):
        headers["Authorization"] = f"Bearer {query['token']}"
    context = None
    if scheme == "https" and query.get("verify", "yes").lower() in ("no", "false", "0"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return urllib.request.Request(url, data=payload, headers=headers, method="POST"), context


def _post(request: urllib.request.Request, context: ssl.SSLContext | None, timeout: float) -> None:
    """Sends ``request``; a DeliveryError saying what the server answered or why it could not be reached."""
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(500).decode("utf-8", "replace").strip()
        raise DeliveryError(f"HTTP {error.code} {error.reason}{f': {detail}' if detail else ''}") from None
    except urllib.error.URLError as error:
        raise DeliveryError(f"cannot reach {request.host}: {error.reason}") from None
    except (TimeoutError, OSError) as error:
        raise DeliveryError(f"{request.host}: {error or type(error).__name__}") from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.I)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _every(target: str) -> datetime.timedelta | None:
    """The ``?every=`` of an Alertmanager target (``90s``, ``15m``, ``1h``, ``1d``, or seconds): how often the
    evaluations run when they are not ``--watch``'s (cron, a CronJob), so that FIRING alerts outlive the gap
    between two of them; ``None`` when not given. A ValueError for a value that is not a duration."""
    value = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target.strip()).query)).get("every")
    if value is None:
        return None
    match = _DURATION.match(value)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{redact(target)}: every={value!r} is not a duration (90s, 15m, 1h, 1d)")
    return datetime.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2].lower()])


def _send_alertmanager(
    target: str,
    notifications: Sequence[Notification],
    timeout: float,
    repeat: datetime.timedelta | None,
    told_at: datetime.datetime,
) -> None:
    """Posts all the notifications to an Alertmanager in one request."""
    now = datetime.datetime.now(datetime.timezone.utc)
    repeat = _every(target) or repeat
    payload = json.dumps([alertmanager_alert(n, now, repeat, told_at) for n in notifications]).encode()
    request, context = _alertmanager_request(target, payload)
    try:
        _within(timeout, lambda: _post(request, context, timeout), "alertmanager")
    except DeliveryError as error:
        raise DeliveryError(_one_line(str(error), target)) from None


# --- the entry points -------------------------------------------------------------------------------------------


def texts(target: str, notifications: Sequence[Notification], now: datetime.datetime) -> list[str]:
    """The text ``target`` would get for ``notifications`` (what :func:`send` sends it: a title line, then the body),
    without contacting it: for ``--dry-run``. An Alertmanager's is each alert's summary and description."""
    if is_alertmanager(target):
        return [f"{title(n)}\n{body(n, now)}" for n in notifications]
    apprise = import_extra("apprise", "alerts")
    notifier = apprise.Apprise()
    notifier.add(target)
    return [f"{head}\n{text}" for head, text, _ in _apprise_messages(notifications, format_of(notifier), now)]


def check_target(target: str) -> None:
    """Raises ValueError (one line, the target redacted) when ``target`` cannot be delivered to whatever the
    receiver does: an Alertmanager URL without a host, or a URL no Apprise service takes (``slak://...``); a
    :class:`~otel_datasink.extras.MissingExtraError` when it needs Apprise and Apprise is not installed.

    For a command line to refuse a mistyped ``--notify`` at once, instead of failing it at every evaluation.
    """
    if is_alertmanager(target):
        parts = urllib.parse.urlsplit(target.strip())
        if not parts.hostname:
            raise ValueError(f"{redact(target)}: an Alertmanager URL needs a host (alertmanager://HOST:9093)")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(f"{redact(target)}: not a port number") from None
        _every(target)
        return
    apprise = import_extra("apprise", "alerts")
    records = _DeliveryRecords()
    logger = logging.getLogger("apprise")
    token = _capturing.set(records)
    try:
        with _apprise_causes(logger):  # its complaints are this ValueError's message, not log lines too
            usable = apprise.Apprise.instantiate(target) is not None
    finally:
        _capturing.reset(token)
    if not usable:
        cause = "; ".join(dict.fromkeys(records.messages)) or "no Apprise service takes it"
        raise ValueError(f"{redact(target)}: not a usable Apprise URL ({_one_line(cause, target)})")


def send(
    target: str,
    notifications: Sequence[Notification],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    repeat: datetime.timedelta | None = None,
    now: datetime.datetime | None = None,
) -> None:
    """Delivers ``notifications`` to one target, or raises :class:`DeliveryError` saying why not, in one line.

    Apprise: one message per call, a digest when there are several notifications (call once per notification
    for one message each). Alertmanager: one POST of them all. Returns or raises within ``timeout`` seconds.
    ``repeat``: the time to the next evaluation (``--watch``'s interval): a FIRING Alertmanager alert ends a little
    after it unless posted again (see :func:`alertmanager_alert`); the target's ``?every=`` wins over it. With
    neither, Alertmanager ends it after its ``resolve_timeout`` (5 min by default). ``now``: the evaluation's
    instant, that every age in the messages' text is at (the clock's now when not given).
    """
    if not notifications:
        return
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        if is_alertmanager(target):
            _send_alertmanager(target, notifications, timeout, repeat, now)
        else:
            _send_apprise(target, notifications, timeout, now)
    except (MissingExtraError, ValueError) as error:
        # A target that cannot work (no Apprise installed, a bad ?every=): not delivered, and said why, like a
        # receiver that is down; check_target() refuses it earlier, where a command line can.
        raise DeliveryError(_one_line(str(error), target)) from None
