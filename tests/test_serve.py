"""``otel-datasink serve`` against hostile clients and pages, over real sockets to a real ``serve`` process: its
threads stay under the connection cap however many connections never finish their headers, and every such
connection is closed after the header timeout, token or not; a request is judged on its headers alone (Host, then
token); a ``Host`` it does not answer to (DNS rebinding) is refused; its page runs no script but its own."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import selectors
import socket
import time
from pathlib import Path

import pytest
from command_line import assert_one_line_failure
from command_line import cli as run
from serve_process import serve_process, serving

from otel_datasink import cli
from otel_datasink.report.pageserver import HEADER_TIMEOUT, MAX_CONNECTIONS

pytest.importorskip("vl_convert", reason="the report extra (vl-convert-python) is not installed")

SLACK = 30.0
"""Seconds past the header timeout within which a connection must be closed (CI is a loaded 2-core machine)."""
HALF_OPEN = 1500
"""Connections that never finish their headers, or send nothing (the issue's figure)."""
_PARTIAL = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture
def location(tmp_path) -> str:
    """An empty location: its page (which says so) is quick to build, and these tests are about the server."""
    folder = tmp_path / "datasink"
    folder.mkdir()
    return str(folder)


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return path


def port_of(line: str) -> int:
    return int(re.search(r"http://\S+:(\d+)/", line).group(1))


def get(port: int, host: str | tuple[str, ...], headers: dict[str, str] | None = None, method: str = "GET"):
    """The response to a request to 127.0.0.1:``port`` whose ``Host`` header is ``host`` (a tuple: as many)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest(method, "/", skip_host=True)
    for value in (host,) if isinstance(host, str) else host:
        connection.putheader("Host", value)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))


def closed_within(sockets: list[socket.socket], seconds: float) -> list[socket.socket]:
    """Waits up to ``seconds`` for the server to close each socket (whatever it answered first); the ones left open."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            try:
                data = key.fileobj.recv(65536)
            except OSError:  # a reset: closed too
                data = b""
            if not data:
                selector.unregister(key.fileobj)
    left = [key.fileobj for key in selector.get_map().values()]
    selector.close()
    return left


def test_idle_and_half_open_connections_hold_at_most_the_cap_of_threads_and_are_closed_at_the_header_timeout(
    location,
):
    with serve_process(location, "--listen", "127.0.0.1:0") as (process, line):
        port = port_of(line)
        idle = threads_of(process.pid)
        sockets = []
        try:
            for number in range(HALF_OPEN):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sockets.append(sock)
                if number % 2:
                    continue  # idle: not a byte
                try:
                    sock.sendall(_PARTIAL)  # a request line and a header, and never the end of the headers
                except OSError:
                    pass  # refused (over the cap) before it could send
            busiest = threads_of(process.pid)
            assert busiest <= idle + MAX_CONNECTIONS, (idle, busiest)
            assert closed_within(sockets, HEADER_TIMEOUT + SLACK) == []
        finally:
            for sock in sockets:
                sock.close()
        # The slots are free again: a reader is served.
        assert get(port, f"127.0.0.1:{port}").status == 200


def test_a_client_without_the_token_that_trickles_its_headers_is_cut_at_the_header_timeout(location, token_file):
    with serving(location, "--listen", "127.0.0.1:0", "--token-file", str(token_file)) as line:
        sock = socket.create_connection(("127.0.0.1", port_of(line)), timeout=30)
        with sock:
            sock.sendall(_PARTIAL)
            started = time.monotonic()
            answer = b""
            while time.monotonic() - started < HEADER_TIMEOUT + SLACK:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")  # a header a second: each read of it is quick
                except OSError:
                    break
                sock.settimeout(1.0)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                answer += data
            else:
                pytest.fail(f"still open {HEADER_TIMEOUT + SLACK:g}s after its first byte")
        assert answer == b""  # closed unanswered: nothing of the page


def test_without_the_token_a_request_is_refused_on_its_headers_before_its_body(location, token_file):
    with serving(location, "--listen", "127.0.0.1:0", "--token-file", str(token_file)) as line:
        port = port_of(line)
        # A body announced and never sent: the answer comes from the headers alone, 401 before anything else.
        refused = get(port, f"127.0.0.1:{port}", {"Content-Length": str(10**9)}, method="POST")
        assert refused.status == 401 and refused.body == b"missing or wrong token\n"
        allowed = get(port, f"127.0.0.1:{port}", {"Authorization": "Bearer s3cret", "Content-Length": "5"}, "POST")
        assert allowed.status == 405


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "localhost.evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "127.0.0.1:{port}@evil.example",
        "",
        (),  # none
        ("127.0.0.1:{port}", "evil.example"),  # two
    ],
)
def test_a_host_the_server_does_not_answer_to_is_refused_in_one_line(location, host):
    with serving(location) as line:  # the default: loopback, no token, which a DNS-rebinding page could read
        port = port_of(line)
        hosts = (host,) if isinstance(host, str) else host
        refused = get(port, tuple(value.format(port=port) for value in hosts))
        assert refused.status == 403
        assert refused.body.count(b"\n") == 1 and b"--allowed-host" in refused.body
        assert b"<html" not in refused.body


def test_the_listen_address_the_loopback_names_and_allowed_hosts_are_served(location):
    with serving(location, "--listen", "127.0.0.1:0", "--allowed-host", "Dash.Example.") as line:
        port = port_of(line)
        hosts = [
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            "localhost:9000",  # through an SSH tunnel (ssh -L 9000:localhost:PORT)
            "LOCALHOST",
            "dash.example",
            "dash.example:443",  # behind a proxy
            "DASH.example.",
        ]
        for host in hosts:
            assert get(port, host).status == 200, host
        assert get(port, "other.example").status == 403


def test_on_every_interface_any_ip_address_is_a_host_but_no_other_name(location, token_file):
    with serving(location, "--listen", "0.0.0.0:0", "--token-file", str(token_file)) as line:
        port = port_of(line)
        token = {"Authorization": "Bearer s3cret"}
        for host in (f"192.0.2.7:{port}", f"[2001:db8::7]:{port}", f"127.0.0.1:{port}", f"localhost:{port}"):
            assert get(port, host, token).status == 200, host
        assert get(port, f"evil.example:{port}", token).status == 403


@pytest.mark.parametrize("value", ["https://dash.example/", "dash.example:443", "dash example", ""])
def test_an_allowed_host_that_is_no_host_name_is_a_usage_error(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--location", str(tmp_path), "--allowed-host", value])
    assert exit_info.value.code == 2
    assert "--allowed-host: not a host name or IP address" in capsys.readouterr().err


def test_a_port_in_use_fails_in_one_line_naming_the_address_and_listen(location):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = run("serve", "--location", location, "--listen", address)
    assert_one_line_failure(done, "serve", f"cannot listen on {address} (--listen): address already in use")
    assert done.stdout == ""


def test_the_page_and_its_header_allow_no_script_but_the_pages_own(location):
    with serving(location, "--listen", "127.0.0.1:0") as line:
        port = port_of(line)
        response = get(port, f"127.0.0.1:{port}")
    header = response.headers["Content-Security-Policy"]
    text = response.body.decode()
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text).group(1)
    scripts = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)
    hashes = [base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() for script in scripts]
    for policy in (header, meta):
        script_src = re.search(r"script-src ([^;]+)", policy).group(1).split()
        assert script_src == [f"'sha256-{digest}'" for digest in hashes], policy
