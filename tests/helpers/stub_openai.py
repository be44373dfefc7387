"""A tiny OpenAI-compatible chat server on 127.0.0.1, for fault tests.

It stands in for a model server where the model itself does not matter (it
answers with canned text), so tests of stalls, outages and hostile error
bodies run in seconds instead of loading llama.cpp. The HTTP side is real:
the client under test talks to it over TCP with the openai SDK.

Modes: ``answer`` (a completion whose answer is the sum in "What is a+b?",
else 42), ``hang`` (accept the request, never answer), ``error`` (HTTP 500
with ``error_message`` as the error's message), ``bad_request`` (HTTP 400).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SUM_RE = re.compile(r"What is (\d+)\s*\+\s*(\d+)\?")


def canned_answer(prompt: str, seed: Any) -> str:
    """Deterministic text per (prompt, seed): the same request always gets the same answer."""
    match = SUM_RE.search(prompt)
    answer = int(match.group(1)) + int(match.group(2)) if match else 42
    tag = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:8]
    return f"<think>Adding up ({tag}).</think>The answer is \\boxed{{{answer}}}."


class StubOpenAI:
    """Serve ``/v1/chat/completions`` on 127.0.0.1 in a background thread."""

    def __init__(self, mode: str = "answer", error_message: str = "") -> None:
        self.mode = mode
        self.error_message = error_message
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        """Every request's JSON body, in arrival order."""
        self._release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests += 1
                stub.bodies.append(body)
                if stub.mode == "hang":
                    stub._release.wait()
                    return
                if stub.mode in ("error", "bad_request"):
                    status = 500 if stub.mode == "error" else 400
                    err = {"error": {"message": stub.error_message or "no", "type": "stub"}}
                    self._send(status, err)
                    return
                users = [m["content"] for m in body.get("messages", []) if m["role"] == "user"]
                text = canned_answer(users[-1] if users else "", body.get("seed"))
                self._send(
                    200,
                    {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "stub"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
                    },
                )

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StubOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
