"""The server behind ``workbench serve-lm``: a workbench runtime behind the OpenAI API.

A target for trying things (the load generator, a runtime's behaviour under load), not a
production server: plain HTTP/1.1 on stdlib asyncio, no authentication, greedy decoding.

``POST /v1/completions`` and ``/v1/chat/completions`` (``stream: true`` answers
``text/event-stream`` chunks ``data: {...}`` ending ``data: [DONE]``; without it, one JSON
answer) and ``GET /v1/models``. Every chunk carries ``"workbench": {"server_ms": ...}``:
the server's own milliseconds from reading the request to writing that chunk, so a
client's TTFT can be checked against the server's.

Batching: one thread owns the `Decoder` and generates; requests that arrive within
``batch_window_ms`` of the oldest waiting one and whose prompts have the same length in
tokens decode together, up to ``max_batch`` (the decoders take no padding or attention
mask, so ragged prompts cannot share a batch: those wait for the next one). A batch runs
until its longest request is done; a request arriving meanwhile waits for the next batch
(no continuous batching: the runtime's KV cache is the decoder's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import InputError, WorkbenchError

#: largest request body read (bytes)
MAX_BODY_BYTES = 1 << 20


@dataclass
class _Job:
    """One request waiting for, or in, a batch."""

    ids: list[int]
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    tokens: asyncio.Queue[int | Exception | None] = field(default_factory=asyncio.Queue)
    queued: float = field(default_factory=time.perf_counter)

    def put(self, item: int | Exception | None) -> None:
        self.loop.call_soon_threadsafe(self.tokens.put_nowait, item)


class LmServer:
    """A causal LM on one workbench runtime, behind the OpenAI-compatible streaming API.

    Args:
        model: a ``transformers`` causal LM (`workbench.loaders.language.language_model`).
        backend: a generation backend (``"torch"``, ``"onnxruntime"``, ...).
        name: the model name the API reports.
        tokenizer: a `Tokenizer`; None: the model folder's, else bytes when the
            vocabulary holds every byte (token-id prompts always work).
        max_batch: most requests decoded together.
        batch_window_ms: how long the oldest waiting request waits for others.
        threads: intra-op threads of the decoder (None: the runtime's default).

    Raises:
        UnsupportedModelError: the backend cannot generate, or the model is no causal LM.

    Example:
        >>> server = LmServer(wb.language_model("llama-tiny"), "torch", name="llama-tiny")
        >>> url, stop = server.start()      # a thread; url is http://127.0.0.1:<port>
    """

    def __init__(
        self,
        model: Any,
        backend: str = "torch",
        *,
        name: str = "model",
        tokenizer: Any = None,
        max_batch: int = 8,
        batch_window_ms: float = 5.0,
        threads: int | None = None,
    ) -> None:
        from workbench.backends.base import generative, get_backend
        from workbench.loaders.causal_lm import causal_lm
        from workbench.loaders.tokenizers import (
            ByteTokenizer,
            check_vocabulary,
            load_tokenizer,
            model_tokenizer,
        )
        from workbench.profiling.generate import token_steps

        self.lm = causal_lm(model)
        self.name, self.backend = name, backend
        self.max_batch, self.window_s = max_batch, batch_window_ms / 1e3
        found = load_tokenizer(tokenizer) if tokenizer is not None else model_tokenizer(model)
        if found is None and self.lm.vocab_size >= ByteTokenizer.vocab_size:
            found = ByteTokenizer()
        if found is not None:
            check_vocabulary(found, self.lm.vocab_size, self.lm.name)
        self.tokenizer = found
        self.decoder = generative(get_backend(backend)).decoder(model, "cpu", threads=threads)
        # one short generation first, so the first requests do not pay the runtime's
        # cold start (allocations, lazy initialisation) in their TTFT
        list(token_steps(self.decoder, np.zeros((1, 2), dtype=np.int64), 2))
        #: how many batches of each size were decoded (requests decoded together)
        self.batch_sizes: Counter[int] = Counter()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._generate, name="serve-lm-decoder", daemon=True)
        self._worker.start()

    # -- the decoding thread ---------------------------------------------------------------

    def _batch(self, first: _Job, held: list[_Job]) -> list[_Job]:
        """``first`` and the jobs with its prompt length arriving within the window."""
        batch = [first]
        deadline = first.queued + self.window_s
        for job in list(held):
            if len(batch) < self.max_batch and len(job.ids) == len(first.ids):
                batch.append(job)
                held.remove(job)
        while len(batch) < self.max_batch and (left := deadline - time.perf_counter()) > 0:
            try:
                incoming = self._jobs.get(timeout=left)
            except queue.Empty:
                break
            if incoming is None:  # closing: let the loop see it after this batch
                self._jobs.put(None)
                break
            (batch if len(incoming.ids) == len(first.ids) else held).append(incoming)
        return batch

    def _generate(self) -> None:
        from workbench.profiling.generate import token_steps

        held: list[_Job] = []
        while True:
            first = held.pop(0) if held else self._jobs.get()
            if first is None:
                return
            batch = self._batch(first, held)
            self.batch_sizes[len(batch)] += 1
            ids = np.asarray([job.ids for job in batch], dtype=np.int64)
            length = max(job.max_tokens for job in batch)
            try:
                for step, (tokens, _) in enumerate(token_steps(self.decoder, ids, length)):
                    for job, token in zip(batch, tokens, strict=True):
                        if step < job.max_tokens:
                            job.put(int(token))
                        if step + 1 == job.max_tokens:
                            job.put(None)
            except Exception as exc:  # the runtime failed: each request says so, the server stays
                for job in batch:
                    job.put(exc)

    # -- HTTP --------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one HTTP request (one per connection)."""
        try:
            method, path, body = await _read_request(reader)
            received = time.perf_counter()
            if method == "GET" and path.rstrip("/") == "/v1/models":
                data = {"object": "list", "data": [{"id": self.name, "object": "model"}]}
                return _respond(writer, 200, data)
            if method != "POST" or not path.rstrip("/").endswith("completions"):
                return _respond(writer, 404, _error(f"no route {method} {path}"))
            chat = path.rstrip("/").endswith("chat/completions")
            job, stream, usage = self._job(body, chat)
            self._jobs.put(job)
            await self._answer(writer, job, chat, stream, usage, received)
        except InputError as exc:
            _respond(writer, 400, _error(str(exc)))
        except ValueError:  # a request line or header over asyncio's 64 KiB line limit
            _respond(writer, 400, _error("a request line or header is too long"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()

    def _job(self, body: bytes, chat: bool) -> tuple[_Job, bool, bool]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise InputError("the request body is not JSON") from None
        if not isinstance(request, dict):
            raise InputError("the request body is not a JSON object")
        if chat:
            messages = request.get("messages") or []
            prompt: Any = "".join(
                str(m.get("content", "")) for m in messages if isinstance(m, dict)
            )
        else:
            prompt = request.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        ids = self._ids(prompt)
        max_tokens = request.get("max_tokens", request.get("max_completion_tokens", 16))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if len(ids) + max_tokens - 1 > self.lm.context:
            raise InputError(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceed the context "
                f"of {self.lm.context}"
            )
        options = request.get("stream_options") or {}
        usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        return _Job(ids, max_tokens, asyncio.get_running_loop()), bool(request.get("stream")), usage

    def _ids(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise InputError("this model has no tokenizer: send the prompt as token ids")
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, list) and all(type(i) is int for i in prompt):
            ids = list(prompt)
        else:
            raise InputError("prompt must be a string or a list of token ids")
        if not ids:
            raise InputError("the prompt is empty")
        if min(ids) < 0 or max(ids) >= self.lm.vocab_size:
            raise InputError(f"token ids must be in [0, {self.lm.vocab_size})")
        return ids

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token]) if self.tokenizer is not None else f" {token}"

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        job: _Job,
        chat: bool,
        stream: bool,
        usage: bool,
        received: float,
    ) -> None:
        ident = f"cmpl-{id(job):x}"
        kind = "chat.completion" if chat else "text_completion"
        if stream:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
        texts: list[str] = []
        while (item := await job.tokens.get()) is not None:
            if isinstance(item, Exception):
                message = f"{self.backend} failed: {' '.join(str(item).split())[:200]}"
                if not stream:
                    return _respond(writer, 500, _error(message))
                writer.write(_event({"error": {"message": message}}))
                return
            texts.append(self._text(item))
            if stream:
                choice = (
                    {"index": 0, "delta": {"content": texts[-1]}, "finish_reason": None}
                    if chat
                    else {"index": 0, "text": texts[-1], "finish_reason": None}
                )
                chunk: dict[str, Any] = {
                    "id": ident,
                    "object": f"{kind}.chunk" if chat else kind,
                    "model": self.name,
                    "choices": [choice],
                }
                chunk["workbench"] = {"server_ms": (time.perf_counter() - received) * 1e3}
                writer.write(_event(chunk))
                await writer.drain()
        counts = {
            "prompt_tokens": len(job.ids),
            "completion_tokens": len(texts),
            "total_tokens": len(job.ids) + len(texts),
        }
        if not stream:
            text = "".join(texts)
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text}
            )
            data = {
                "id": ident,
                "object": kind,
                "model": self.name,
                "choices": [{**choice, "finish_reason": "length"}],
                "usage": counts,
            }
            return _respond(writer, 200, data)
        if usage:
            writer.write(
                _event(
                    {
                        "id": ident,
                        "object": kind,
                        "model": self.name,
                        "choices": [],
                        "usage": counts,
                    }
                )
            )
        writer.write(b"data: [DONE]\n\n")

    # -- running -----------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        ready: Callable[[int], None] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """Serve until cancelled (on ``sock`` when given, already listening); ``ready(port)``
        is called once listening."""
        server = await (
            asyncio.start_server(self.handle, sock=sock, backlog=1024)
            if sock is not None
            else asyncio.start_server(self.handle, host, port, backlog=1024)
        )
        async with server:
            if ready is not None:
                ready(server.sockets[0].getsockname()[1])
            await server.serve_forever()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
        """Serve on a thread of its own; (base URL, stop). Port 0 picks a free one."""
        loop = asyncio.new_event_loop()
        bound: queue.SimpleQueue[int] = queue.SimpleQueue()
        task: list[asyncio.Task[None]] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            task.append(loop.create_task(self.serve(host, port, bound.put)))
            try:
                loop.run_until_complete(task[0])
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="serve-lm-http", daemon=True)
        thread.start()
        chosen = bound.get(timeout=30)

        def stop() -> None:
            loop.call_soon_threadsafe(task[0].cancel)
            thread.join()
            self.close()

        return f"http://{host}:{chosen}", stop

    def close(self) -> None:
        """Stop the decoding thread and release the decoder."""
        self._jobs.put(None)
        self._worker.join()
        self.decoder.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    line = await reader.readline()
    parts = line.decode("latin-1").split()
    if len(parts) < 2:
        raise InputError("not an HTTP request")
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip()) if value.strip().isdigit() else -1
    if not 0 <= length <= MAX_BODY_BYTES:
        raise InputError(f"a request body needs a Content-Length of at most {MAX_BODY_BYTES}")
    return parts[0].upper(), parts[1], await reader.readexactly(length)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


def _respond(writer: asyncio.StreamWriter, status: int, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
    writer.write(
        f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe: a script waits for this line


def serve_lm(
    source: str,
    backend: str = "torch",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    batch_window_ms: float = 5.0,
    threads: int | None = None,
    tokenizer: Any = None,
    seed: int = 0,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Load ``source`` (`language_model`) and serve it until interrupted.

    Raises:
        WorkbenchError: the model cannot be loaded or the backend cannot generate.
    """
    from workbench.loaders.language import language_model

    try:  # the port first: a taken one is said before a model is loaded for minutes
        sock = socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        raise WorkbenchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        model = language_model(source, seed=seed)
    except BaseException:
        sock.close()
        raise
    server = LmServer(
        model,
        backend,
        name=str(source),
        tokenizer=tokenizer,
        max_batch=max_batch,
        batch_window_ms=batch_window_ms,
        threads=threads,
    )

    def ready(bound: int) -> None:
        (announce or _say)(
            f"serving {source} on {backend} at http://{host}:{bound}/v1/completions "
            f"(batches of up to {max_batch}, {batch_window_ms:g} ms window; Ctrl-C stops)"
        )

    try:
        asyncio.run(server.serve(host, port, ready, sock))
    finally:
        server.close()
