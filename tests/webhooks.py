"""A webhook receiver on 127.0.0.1 keeping the JSON bodies POSTed to it (Apprise ``json://`` targets)."""

from __future__ import annotations

import http.server
import json
import threading


class Receiver:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to it; ``refuse`` answers 500 instead; ``answer``
    is the body of its 200s (Slack's webhooks answer ``ok``, and Apprise's Slack expects it)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.refuse = False
        self.refused = 0
        self.answer = b""
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if receiver.refuse:
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()
                if not receiver.refuse:
                    self.wfile.write(receiver.answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[dict]:
        bodies, self.bodies = self.bodies, []
        return bodies
