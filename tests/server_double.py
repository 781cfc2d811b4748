"""A small local HTTP proxy in front of a real server, for what a healthy llama-cpp-python server never shows.

`FaultyProxy(upstream, fault)` passes every request to the real server at `upstream`
(e.g. the llama.cpp test server) except the completion and chat calls, which it answers
with the `fault`: "busy" (HTTP 429, Retry-After: 7), "forbidden" (HTTP 403), "garbage"
(an HTML page with status 200), "huge" (an endless stream of large events), "hang"
(it reads the request and never answers), "cut" (a few good events, then the
connection drops), "echo" (HTTP 500 repeating the request's Authorization header) or
"slow" (a word every 50 ms, as many as asked, as from a big model far away); `looks_like` makes it pass for another kind of server (see LOOKS).
Its `.url` is an OpenAI base URL (…/v1).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("busy", "forbidden", "garbage", "huge", "hang", "cut", "echo", "slow")
# `looks_like`: "generic" hides the tokenize endpoints (a server that cannot count, like Ollama's
# OpenAI API); "llama.cpp" also answers GET /props as llama.cpp's own server does (its context
# size and chat template), which llama-cpp-python's server has no route for.
LOOKS = ("generic", "llama.cpp")


class FaultyProxy:
    def __init__(self, upstream: str, fault: str | None = None, looks_like: str | None = None):
        assert fault in FAULTS + (None,) and looks_like in LOOKS + (None,), (fault, looks_like)
        self.upstream, self.fault, self.looks_like = urlsplit(upstream), fault, looks_like
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers) seen
        self.released = threading.Event()  # ends a "hang" (at stop)
        self.hung_up: list[float] = []  # time.monotonic() when a client closed a stream being sent
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy.requests.append(("GET", self.path, dict(self.headers)))
                if self.path == "/props" and proxy.looks_like == "llama.cpp":
                    props = {"default_generation_settings": {"n_ctx": proxy.n_ctx}, "total_slots": 1,
                             "chat_template": proxy.chat_template}
                    return self._send(200, json.dumps(props).encode(), "application/json")
                self._forward(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append(("POST", self.path, dict(self.headers)))
                if proxy.looks_like == "generic" and self.path.startswith(("/extras/", "/tokenize")):
                    return self._send(404, b'{"detail": "Not Found"}', "application/json")
                request = json.loads(body or b"{}")
                streamed, self.asked = request.get("stream") is True, int(request.get("max_tokens") or 16)
                if proxy.looks_like == "generic" and not streamed and self.path.endswith("/completions"):
                    return self._send(400, b'{"error": {"message": "bad request"}}', "application/json")
                if self.path.endswith(("/completions", "/chat/completions")) and streamed and proxy.fault:
                    return self._fault()
                self._forward(body)

            def _forward(self, body):
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                connection.request(self.command, self.path, body=body, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            def _send(self, status, body: bytes, content_type: str, extra=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _event(self, text: str) -> bytes:
                return ("data: " + json.dumps({"choices": [{"text": text, "index": 0, "finish_reason": None}]})
                        + "\n\n").encode()

            def _fault(self):
                fault = proxy.fault
                if fault == "busy":
                    return self._send(429, b'{"error": {"message": "too many requests"}}', "application/json",
                                      [("Retry-After", "7")])
                if fault == "forbidden":
                    return self._send(403, b'{"detail": "Forbidden"}', "application/json")
                if fault == "garbage":
                    return self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
                if fault == "echo":  # a hostile server repeats the request's key in its error
                    said = json.dumps({"error": {"message": f"bad key {self.headers.get('Authorization')}"}})
                    return self._send(500, said.encode(), "application/json")
                if fault == "hang":
                    proxy.released.wait(120)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    if fault == "slow":  # a big model far away: one word every 50 ms, as many as asked
                        for _ in range(min(self.asked, 600)):
                            self.wfile.write(self._event(" word"))
                            self.wfile.flush()
                            time.sleep(0.05)
                        self.wfile.write(("data: " + json.dumps({"choices": [{"text": "", "index": 0,
                                          "finish_reason": "length"}]}) + "\n\ndata: [DONE]\n\n").encode())
                        self.wfile.flush()
                        return
                    if fault == "huge":
                        while not proxy.released.is_set():
                            self.wfile.write(self._event("words " * 2000))
                            self.wfile.flush()
                    else:  # cut: two good pieces, then the connection drops mid-stream
                        self.wfile.write(self._event(" The wind"))
                        self.wfile.write(self._event(" rises"))
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:  # the client hung up
                    proxy.hung_up.append(time.monotonic())
                self.close_connection = True

        self.n_ctx, self.chat_template = 1024, "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FaultyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
