"""A fault-injecting HTTP proxy in front of an OpenAI-compatible server, for tests.

It listens on 127.0.0.1 only and forwards to an upstream on 127.0.0.1. Faults
are planned per prompt: a marker in the last user message (say ``[flaky]``)
maps to a list of faults applied to that request's successive attempts; once
the list is used up the request is forwarded. Every request received is
logged, so tests can count what the client sent.

Faults: ``429`` (with ``Retry-After``), ``500``, ``503``, ``400``, ``401``,
``404``, ``stall`` (hold the request past the client's timeout), ``cut`` (a 200
whose body stops mid-way, then the connection closes), ``drop`` (close the
connection without answering) and ``malformed`` (a 200 whose body is not JSON).
Transforms: ``reasoning`` (answer, but move the text into ``reasoning_content``
as DeepSeek's API and vLLM's reasoning parsers do); ``emulate_n=True`` makes
the proxy honour ``n`` by asking upstream ``n`` times (llama.cpp ignores it).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Received:
    """One request as the proxy saw it."""

    at: float
    body: dict[str, Any]
    fault: str | None
    status: int | None = None

    @property
    def prompt(self) -> str:
        users = [m["content"] for m in self.body.get("messages", []) if m["role"] == "user"]
        return users[-1] if users else ""


@dataclass
class FaultProxy:
    """Forward ``/v1/*`` to ``upstream_port`` on 127.0.0.1, injecting planned faults."""

    upstream_port: int
    plan: dict[str, list[str]] = field(default_factory=dict)
    """Marker in the prompt -> faults for attempts 1, 2, ... of that request."""
    retry_after: str = "1"
    stall_seconds: float = 30.0
    emulate_n: bool = False
    on_request: Callable[[Received], None] | None = None
    port: int = 0
    log: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fault-proxy")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, plan: dict[str, list[str]] | None = None) -> None:
        with self._lock:
            self.log.clear()
            self._attempts.clear()
            if plan is not None:
                self.plan = plan

    def received(self, marker: str = "") -> list[Received]:
        """Requests whose prompt contains ``marker`` (all when empty)."""
        with self._lock:
            return [r for r in self.log if marker in r.prompt]

    # -- one connection -------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    def _fault_for(self, payload: dict[str, Any]) -> tuple[str | None, Received]:
        rec = Received(time.monotonic(), payload, None)
        key = json.dumps(payload, sort_keys=True)
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            for marker, faults in self.plan.items():
                if marker in rec.prompt and attempt < len(faults):
                    rec.fault = faults[attempt]
                    break
            self.log.append(rec)
        if self.on_request is not None:
            self.on_request(rec)
        return rec.fault, rec

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; return False when the connection must close."""
        try:
            payload = json.loads(body or b"{}")
        except json.JSONDecodeError:
            payload = {}
        fault, rec = self._fault_for(payload) if method == "POST" else (None, None)
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
            return False
        if fault == "drop":
            return False
        if fault == "cut":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b'content-length: 400\r\n\r\n{"id": "chatcmpl-1", "choi'
            )
            await writer.drain()
            return False
        if fault == "malformed":
            await self._send(writer, 200, b'{"id": "chatcmpl-1", choices: [oops')
            return True
        if fault in ("429", "500", "503", "400", "401", "404"):
            status = int(fault)
            extra = {"retry-after": self.retry_after} if status == 429 else {}
            err = {"error": {"message": f"injected {status}", "type": "injected", "code": status}}
            await self._send(writer, status, json.dumps(err).encode(), extra)
            if rec is not None:
                rec.status = status
            return True
        status, data = await asyncio.to_thread(self._forward, method, path, headers, payload)
        if rec is not None:
            rec.status = status
        if fault == "reasoning" and status == 200:
            data = _to_reasoning(data)
        await self._send(writer, status, data)
        return True

    def _forward(
        self, method: str, path: str, headers: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, bytes]:
        n = int(payload.get("n") or 1)
        if not (self.emulate_n and n > 1 and path.endswith("/chat/completions")):
            return self._upstream(method, path, headers, payload)
        merged: dict[str, Any] | None = None
        for i in range(n):
            one = {**payload, "n": 1, "seed": (payload.get("seed") or 0) + i}
            status, data = self._upstream(method, path, headers, one)
            if status != 200:
                return status, data
            part = json.loads(data)
            if merged is None:
                merged = part
            else:
                choice = part["choices"][0]
                choice["index"] = i
                merged["choices"].append(choice)
                merged["usage"]["completion_tokens"] += part["usage"]["completion_tokens"]
                merged["usage"]["total_tokens"] += part["usage"]["completion_tokens"]
        return 200, json.dumps(merged).encode()

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=600)
        try:
            fwd = {"content-type": "application/json"}
            if "authorization" in headers:
                fwd["authorization"] = headers["authorization"]
            body = json.dumps(payload).encode() if method == "POST" else None
            conn.request(method, path, body=body, headers=fwd)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Status')}",
            "content-type: application/json",
            f"content-length: {len(data)}",
        ]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()


def _to_reasoning(data: bytes) -> bytes:
    """Move each choice's text into ``reasoning_content`` and answer with a fixed line."""
    out = json.loads(data)
    for choice in out.get("choices", []):
        msg = choice["message"]
        msg["reasoning_content"] = msg.get("content") or ""
        msg["content"] = "The answer is \\boxed{42}."
    return json.dumps(out).encode()
