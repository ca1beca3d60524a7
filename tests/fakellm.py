"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted answers, for tests.

dew talks to it through ChatOpenAI exactly as it talks to DeepSeek, vLLM or Ollama, so tests
cover the real client path: request bodies, HTTP errors, time-outs and malformed replies.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dew.agents.testing import default_reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up is part of the tests, not a failure


class FakeOpenAI:
    def __init__(self, reply=default_reply):
        self.reply = reply
        self.script: deque = deque()  # queued actions, each used once before falling back to `reply`
        self.requests: list[dict] = []
        self.latency = 0.0  # seconds every reply takes (a model call in flight, to be cut off)
        self.in_flight = 0  # requests being answered now, and the most there ever were at once
        self.max_in_flight = 0
        self._flight = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, status: int, times: int = 1) -> None:
        self.script.extend([("status", status)] * times)

    def busy(self, times: int = 1, *, status: int = 429, retry_after: str | None = None, code: str | None = None):
        """Answer that the endpoint is saturated (429, or 503), with a Retry-After header and an
        error code (`insufficient_quota`: a spent quota, not a busy endpoint) if given."""
        self.script.extend([("busy", status, retry_after, code)] * times)

    def hang(self, seconds: float, times: int = 1) -> None:
        self.script.extend([("hang", seconds)] * times)

    def raw(self, body: str, status: int = 200, times: int = 1) -> None:
        """Answer with this body as it is (malformed JSON, no choices, ...)."""
        self.script.extend([("raw", status, body)] * times)

    def cut(self, times: int = 1) -> None:
        """Start a reply and hang up half-way through its body."""
        self.script.extend([("cut",)] * times)

    def say(self, *texts: str) -> None:
        self.script.extend(("text", t) for t in texts)

    def call_tool(self, name: str, **args) -> None:
        self.script.append(("tool", name, args))

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict | str, headers: dict[str, str] | None = None):
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                with fake._flight:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer()
                finally:
                    with fake._flight:
                        fake.in_flight -= 1

            def _answer(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                if fake.latency:
                    time.sleep(fake.latency)
                action = fake.script.popleft() if fake.script else None
                if action and action[0] == "status":
                    return self._send(
                        action[1], {"error": {"message": f"scripted {action[1]}", "type": "server_error"}}
                    )
                if action and action[0] == "busy":
                    _, status, after, code = action
                    error = {"message": f"scripted {status}: slow down", "type": "requests", "code": code}
                    return self._send(status, {"error": error}, {"Retry-After": after} if after else None)
                if action and action[0] == "raw":
                    return self._send(action[1], action[2])
                if action and action[0] == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "4000")
                    self.end_headers()
                    self.wfile.write(
                        b'{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"index": 0, "mess'
                    )
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if action and action[0] == "hang":
                    time.sleep(action[1])
                messages = body.get("messages", [])
                system = "\n".join(m["content"] for m in messages if m["role"] == "system")
                prompt = "\n".join(m["content"] for m in messages if m["role"] == "user")
                if action and action[0] == "tool":
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{len(fake.requests)}",
                                "type": "function",
                                "function": {"name": action[1], "arguments": json.dumps(action[2])},
                            }
                        ],
                    }
                    return self._send(
                        200,
                        {
                            "id": f"chatcmpl-{len(fake.requests)}",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model", "fake"),
                            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        },
                    )
                text = action[1] if action and action[0] == "text" else fake.reply(system, prompt)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        return Handler
