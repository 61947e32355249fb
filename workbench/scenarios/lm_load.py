"""Generative serving load: an OpenAI-compatible streaming client and its goodput.

`lm_load` sends completions requests (``POST /v1/completions`` or ``/v1/chat/completions``
with ``stream: true``, the API of vLLM, TGI, SGLang, llama.cpp's server and
``workbench serve-lm``) at Poisson arrivals, in bursts or at a fixed concurrency, and
times every stream as it arrives: TTFT (first content chunk), the inter-token latencies,
TPOT = (E2E − TTFT) / (tokens − 1) and E2E. Goodput is the requests per second that met
both a TTFT and a TPOT objective (`OBJECTIVES`: MLPerf's LLM server rules and an
interactive preset); `lm_slo` bisects the offered rate for the highest one whose p99s
meet them. A request that is refused, times out, gets a non-streaming or malformed
answer, or whose stream ends before ``data: [DONE]`` is failed, never fast.

The client is stdlib asyncio (HTTP/1.1, chunked transfer, server-sent events): one event
loop holds every stream, so hundreds of concurrent streams cost no threads. The arrival
schedule is `poisson_arrivals`, drawn before the run; when the client cannot issue it on
time the result says so and is invalid (the rate is never silently lowered).
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import ssl
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from workbench.argtypes import number, whole
from workbench.errors import InputError
from workbench.profiling.formatting import frame_text
from workbench.profiling.results import dump_json, load_json
from workbench.scenarios.energy import cost_per_million
from workbench.scenarios.loadgen import poisson_arrivals
from workbench.scenarios.result import json_rows, machine_record, machine_text
from workbench.scenarios.run import ISSUE_TOLERANCE_MS, ISSUED_RATE_SHARE, issued_rate_share
from workbench.units import format_number

T = TypeVar("T")

#: the most a failed request's error body is read (bytes), for its one-line reason
ERROR_BODY_BYTES = 500
#: a point of `lm_slo` passes only when at most this share of its requests failed
MAX_FAILED_SHARE = 0.0


@dataclass(frozen=True)
class Objective:
    """Latency objectives of a generative server: p99 TTFT and p99 TPOT, in ms.

    Attributes:
        ttft_ms: time to first token a request must meet.
        tpot_ms: time per output token after the first.
        name: the preset's name, or ``"custom"``.
    """

    ttft_ms: float
    tpot_ms: float
    name: str = "custom"

    def describe(self) -> str:
        """``"mlperf-llama2: TTFT <= 2000 ms, TPOT <= 200 ms"``."""
        return f"{self.name}: TTFT <= {self.ttft_ms:g} ms, TPOT <= {self.tpot_ms:g} ms"


#: presets: MLPerf Inference's Llama 2 70B server latency constraints (p99 TTFT 2 s, p99
#: TPOT 200 ms) and its interactive scenario's (450 ms, 40 ms)
OBJECTIVES: dict[str, Objective] = {
    "mlperf-llama2": Objective(2000.0, 200.0, "mlperf-llama2"),
    "interactive": Objective(450.0, 40.0, "interactive"),
}


def objective_of(objective: str | Objective | tuple[float, float]) -> Objective:
    """An `Objective` from a preset name, an `Objective` or ``(ttft_ms, tpot_ms)``.

    Raises:
        InputError: an unknown preset or a non-positive objective.
    """
    if isinstance(objective, Objective):
        found = objective
    elif isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise InputError(
                f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)} "
                "or (ttft_ms, tpot_ms)"
            )
        found = OBJECTIVES[objective]
    else:
        ttft, tpot = objective
        found = Objective(float(ttft), float(tpot))
    number("ttft_ms", found.ttft_ms, above=0.0)
    number("tpot_ms", found.tpot_ms, above=0.0)
    return found


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``http(s)://host:port`` and the API path.

    Attributes:
        scheme: ``"http"`` or ``"https"``.
        host: the server's host.
        port: its port.
        path: ``/v1/completions`` or ``/v1/chat/completions``.
    """

    scheme: str
    host: str
    port: int
    path: str

    @property
    def chat(self) -> bool:
        """The chat API (deltas in ``choices[0].delta.content``)."""
        return self.path.rstrip("/").endswith("chat/completions")

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """From ``http://host:port`` (then ``/v1/completions``) or a full API URL.

        Raises:
            InputError: not an http(s) URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(
                f"{url!r} is not an http(s) URL; give e.g. http://localhost:8000 or "
                "http://host:8000/v1/chat/completions"
            )
        path = parts.path.rstrip("/")
        if not path.endswith("completions"):
            path = (path if path.endswith("/v1") else path + "/v1") + "/completions"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, path)


#: columns of `LmLoadResult.requests` (times in seconds from the run's start, NaN when
#: the request never got that far)
REQUEST_COLUMNS = [
    "request", "scheduled_s", "issue_s", "first_token_s", "completion_s", "ttft_ms",
    "tpot_ms", "e2e_ms", "output_tokens", "chunks", "server_ttft_ms", "ok", "error",
    "inter_token_ms",
]  # fmt: skip


class _Failed(Exception):
    """A request that failed, with the one line that says why."""


async def _body_chunks(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """The response body as it arrives, un-chunked."""
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise _Failed("the connection closed inside a chunked body")
        try:
            size = int(size_line.split(b";")[0].strip() or b"x", 16)
        except ValueError:
            raise _Failed(f"malformed chunk size {size_line[:40]!r}") from None
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readline()
        yield data


def _delta(chunk: Any, chat: bool) -> tuple[str, int | None, float | None]:
    """(text, usage's completion tokens, the server's ms since the request) of one event.

    Raises:
        _Failed: an error event, or one that is not shaped as an OpenAI stream's chunk.
    """
    if not isinstance(chunk, dict):
        raise _Failed(f"malformed chunk (not a JSON object): {str(chunk)[:80]}")
    if "error" in chunk:
        raise _Failed(f"the server sent an error: {str(chunk['error'])[:200]}")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise _Failed("malformed chunk (no 'choices' list): not an OpenAI completions stream")
    text: Any = ""
    if choices:
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) and chat else None
        text = (
            (delta.get("content") or "" if isinstance(delta, dict) else None)
            if chat
            else (choice.get("text") if isinstance(choice, dict) else None)
        )
        if not isinstance(text, str):
            raise _Failed(f"malformed chunk (a choice without text): {json.dumps(choice)[:80]}")
    return (
        text,
        _field(chunk, "usage", "completion_tokens"),
        _field(chunk, "workbench", "server_ms"),
    )


def _field(chunk: dict[str, Any], outer: str, inner: str) -> Any:
    """``chunk[outer][inner]`` when it is a number, else None (optional extras a server may
    send or shape differently: never a reason to fail a request)."""
    holder = chunk.get(outer)
    value = holder.get(inner) if isinstance(holder, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


async def _connect(endpoint: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context() if endpoint.scheme == "https" else None
    try:
        return await asyncio.open_connection(endpoint.host, endpoint.port, ssl=context)
    except ConnectionRefusedError:
        raise _Failed(f"connection refused by {endpoint.host}:{endpoint.port}") from None
    except OSError as exc:
        raise _Failed(f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}") from None


def _request_bytes(endpoint: Endpoint, body: bytes, api_key: str | None, method: str) -> bytes:
    lines = [
        f"{method} {endpoint.path} HTTP/1.1",
        f"Host: {endpoint.host}:{endpoint.port}",
        "Accept: text/event-stream",
        "Connection: close",
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise _Failed(f"not an HTTP response: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _served_model(endpoint: Endpoint, api_key: str | None, timeout_s: float) -> str | None:
    """The first model ``GET /v1/models`` lists (vLLM and most servers need the ``model``
    field to name it), or None when the server does not say."""
    base = endpoint.path[: endpoint.path.index("/v1/") + 3] if "/v1/" in endpoint.path else "/v1"
    listing = Endpoint(endpoint.scheme, endpoint.host, endpoint.port, base + "/models")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await _connect(listing)
            try:
                writer.write(_request_bytes(listing, b"", api_key, "GET"))
                status, headers = await _response_head(reader)
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                body = b"".join([c async for c in _body_chunks(reader, chunked)])
            finally:
                writer.close()
        data = json.loads(body) if status == 200 else {}
        first = data["data"][0]["id"]
    except (_Failed, TimeoutError, ConnectionError, ValueError, KeyError, IndexError, TypeError):
        return None
    return first if isinstance(first, str) else None


async def _stream(
    endpoint: Endpoint, body: bytes, api_key: str | None, origin: float, record: dict[str, Any]
) -> None:
    """Send one streaming request and fill ``record`` with its times as they come.

    Raises:
        _Failed: the request failed (the record keeps the times reached so far).
    """
    reader, writer = await _connect(endpoint)
    try:
        writer.write(_request_bytes(endpoint, body, api_key, "POST"))
        await writer.drain()
        status, headers = await _response_head(reader)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status != 200:
            text = b"".join([c async for c in _body_chunks(reader, chunked)])[:ERROR_BODY_BYTES]
            raise _Failed(f"HTTP {status}: {' '.join(text.decode('utf-8', 'replace').split())}")
        kind = headers.get("content-type", "")
        if "text/event-stream" not in kind:
            raise _Failed(f"not a stream: the server answered {kind or 'no content type'}")
        await _events(reader, chunked, endpoint.chat, origin, record)
    finally:
        writer.close()


async def _events(
    reader: asyncio.StreamReader, chunked: bool, chat: bool, origin: float, record: dict[str, Any]
) -> None:
    """Read server-sent events until ``data: [DONE]``, timing every content chunk."""
    times: list[float] = []
    buffer, usage_tokens, done = b"", None, False
    async for data in _body_chunks(reader, chunked):
        arrived = time.perf_counter() - origin
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise _Failed(f"malformed chunk: {payload[:80]!r}") from None
            text, tokens, stamp = _delta(chunk, chat)
            usage_tokens = tokens if tokens is not None else usage_tokens
            if text:
                if not times and stamp is not None:
                    record["server_ttft_ms"] = float(stamp)
                times.append(arrived)
        if done:
            break
    record["chunks"] = len(times)
    if times:
        record["first_token_s"], record["completion_s"] = times[0], times[-1]
    if not done:
        raise _Failed(f"the stream ended before data: [DONE] after {len(times)} content chunks")
    if not times:
        raise _Failed("the stream ended with no tokens")
    record["output_tokens"] = int(usage_tokens) if usage_tokens else len(times)
    record["inter_token_ms"] = [float(g) * 1e3 for g in np.diff(times)]


async def _timed_request(
    endpoint: Endpoint,
    body: bytes,
    api_key: str | None,
    timeout_s: float,
    origin: float,
    record: dict[str, Any],
) -> None:
    record["issue_s"] = time.perf_counter() - origin
    try:
        async with asyncio.timeout(timeout_s):
            await _stream(endpoint, body, api_key, origin, record)
    except _Failed as exc:
        record["error"] = str(exc)
    except TimeoutError:
        record["error"] = f"timed out after {timeout_s:g} s"
    except (asyncio.IncompleteReadError, OSError) as exc:  # reset, broken pipe, TLS
        record["error"] = f"the connection dropped mid-stream ({type(exc).__name__})"
    except ValueError as exc:  # a header or event line over asyncio's 64 KiB line limit
        record["error"] = f"malformed answer: {' '.join(str(exc).split())[:120]}"
    else:
        record["ok"] = True


def _new_record(index: int, scheduled: float) -> dict[str, Any]:
    return {
        "request": index,
        "scheduled_s": scheduled,
        "issue_s": math.nan,
        "first_token_s": math.nan,
        "completion_s": math.nan,
        "output_tokens": 0,
        "chunks": 0,
        "server_ttft_ms": math.nan,
        "ok": False,
        "error": "",
        "inter_token_ms": [],
    }


async def _drive(
    endpoint: Endpoint,
    bodies: list[bytes],
    schedule_s: np.ndarray | None,
    concurrency: int | None,
    api_key: str | None,
    timeout_s: float,
) -> tuple[list[dict[str, Any]], float]:
    """Issue every request on schedule (or ``concurrency`` at a time); (records, origin)."""
    origin = time.perf_counter()
    if concurrency is not None:
        records = [_new_record(i, math.nan) for i in range(len(bodies))]
        pending = iter(range(len(bodies)))

        async def worker() -> None:
            for i in pending:
                records[i]["scheduled_s"] = time.perf_counter() - origin
                await _timed_request(endpoint, bodies[i], api_key, timeout_s, origin, records[i])

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(bodies)))))
        return records, origin
    assert schedule_s is not None
    records = [_new_record(i, float(t)) for i, t in enumerate(schedule_s)]
    tasks = []
    for index, due in enumerate(schedule_s):
        # sleep(0) when late still yields, so requests already issued get to send
        await asyncio.sleep(max(0.0, float(due) - (time.perf_counter() - origin)))
        request = _timed_request(
            endpoint, bodies[index], api_key, timeout_s, origin, records[index]
        )
        tasks.append(asyncio.ensure_future(request))
    await asyncio.gather(*tasks)
    return records, origin


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, also inside a running event loop
    (a notebook's): there it runs on a thread of its own with a fresh loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, asyncio.run(work)))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=target, name="workbench-lm-load")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _bodies(
    endpoint: Endpoint,
    model: str | None,
    prompts: list[str | list[int]],
    count: int,
    max_tokens: int,
    extra: Mapping[str, Any],
) -> list[bytes]:
    bodies = []
    for index in range(count):
        prompt = prompts[index % len(prompts)]
        body: dict[str, Any] = {
            "max_tokens": max_tokens,
            "stream": True,
            "temperature": 0,
            "stream_options": {"include_usage": True},
        }
        if model is not None:
            body["model"] = model
        if endpoint.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        bodies.append(json.dumps({**body, **extra}).encode())
    return bodies


def _prompts(prompt: Any, chat: bool) -> list[str | list[int]]:
    """The prompts used in turn: texts, or token-id lists (one flat list is one prompt).

    Raises:
        InputError: no prompt, something else than texts or ids, ids for the chat API.
    """
    if isinstance(prompt, str):
        return [prompt]
    items = list(prompt)
    if items and all(type(i) is int for i in items):
        items = [items]
    found: list[str | list[int]] = []
    for item in items:
        if isinstance(item, str):
            found.append(item)
        elif not isinstance(item, Sequence) or not item or any(type(i) is not int for i in item):
            raise InputError("prompt= takes a text, texts, or lists of token ids (integers)")
        elif chat:
            raise InputError("the chat API takes text prompts, not token ids")
        else:
            found.append(list(item))
    if not found:
        raise InputError("no prompt given; give a text or a list of texts")
    return found


def _schedule(
    count: int, rate_per_s: float | None, burst_size: int | None, seed: int
) -> np.ndarray:
    """Arrival offsets: Poisson at the rate; bursts of ``burst_size`` whose starts are
    Poisson at ``rate / burst_size`` (the same mean request rate); one burst without a rate."""
    if rate_per_s is None:
        return np.zeros(count)
    size = burst_size or 1
    bursts = math.ceil(count / size)
    starts = poisson_arrivals(rate_per_s / size, min_queries=bursts, min_duration_s=0.0, seed=seed)
    return np.repeat(starts[:bursts], size)[:count]


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    frame["ttft_ms"] = (frame["first_token_s"] - frame["issue_s"]) * 1e3
    frame["e2e_ms"] = (frame["completion_s"] - frame["issue_s"]) * 1e3
    steps = frame["output_tokens"] - 1
    frame["tpot_ms"] = np.where(
        steps > 0, (frame["e2e_ms"] - frame["ttft_ms"]) / steps.clip(lower=1), math.nan
    )
    frame.loc[~frame["ok"], ["ttft_ms", "e2e_ms", "tpot_ms"]] = math.nan
    return frame[REQUEST_COLUMNS]


def _generator_checks(frame: pd.DataFrame, rate_per_s: float | None) -> list[str]:
    """Why the client did not offer the load asked for (empty when it did).

    The server scenario's checks (`server_checks`): median lag over one mean gap (at
    least `ISSUE_TOLERANCE_MS`), or under `ISSUED_RATE_SHARE` of the scheduled rate;
    the share only when the issue took longer than the schedule by more than that
    tolerance too, since a run of a few dozen requests spans a few gaps and one late
    last request would otherwise sink it.
    """
    if rate_per_s is None or len(frame) < 2:
        return []
    lag_ms = (frame["issue_s"] - frame["scheduled_s"]).to_numpy() * 1e3
    tolerance_ms = max(ISSUE_TOLERANCE_MS, 1e3 / rate_per_s)
    share = issued_rate_share(frame)
    spans = frame[["issue_s", "scheduled_s"]].iloc[[0, -1]].diff().iloc[-1]
    longer_ms = float(spans["issue_s"] - spans["scheduled_s"]) * 1e3
    if np.median(lag_ms) > tolerance_ms or (share < ISSUED_RATE_SHARE and longer_ms > tolerance_ms):
        return [
            f"the client cannot generate {format_number(rate_per_s)} requests/s here: median "
            f"issue lag {np.median(lag_ms):.3g} ms (allowed {tolerance_ms:.3g} ms), issued "
            f"{share:.1%} of the scheduled rate; run the client on a less busy machine"
        ]
    return []


def _p99(values: pd.Series) -> float:
    values = values.dropna()
    return float(np.percentile(values, 99)) if len(values) else math.nan


@dataclass(frozen=True)
class LmLoadResult:
    """One load run against a streaming completions endpoint.

    Attributes:
        url: the endpoint.
        objective: the TTFT and TPOT objectives goodput counts against.
        requests: one row per request (`REQUEST_COLUMNS`): scheduled, issued, first and
            last token times (s from the start), ``ttft_ms``, ``tpot_ms``, ``e2e_ms``,
            ``output_tokens`` (the server's usage count when it sends one, else content
            chunks), ``server_ttft_ms`` (the server's own time to its first token, when
            it sends one: ``workbench serve-lm`` does), ``ok``, ``error`` (why it
            failed) and ``inter_token_ms`` (the gaps between content chunks).
        reasons: why the run does not measure the load asked for (the client fell
            behind); empty when valid.
        settings: arrivals (``rate_per_s``, ``burst_size``, ``concurrency``), ``max_tokens``,
            ``seed``, ``timeout_s``, ``model``.
        price_per_hour: the machine's price, for the cost per 1M output tokens.
        machine: where the client ran (`machine_record`).
    """

    url: str
    objective: Objective
    requests: pd.DataFrame
    reasons: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    price_per_hour: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """The client offered the load asked for."""
        return not self.reasons

    @property
    def ok(self) -> pd.DataFrame:
        """The requests that completed."""
        return self.requests[self.requests["ok"]]

    @property
    def failed(self) -> int:
        """Requests refused, timed out, malformed, non-streaming or dropped mid-stream."""
        return int((~self.requests["ok"]).sum())

    @property
    def duration_s(self) -> float:
        """First issue to last completion (seconds)."""
        frame = self.requests
        end = np.nanmax(frame["completion_s"]) if frame["ok"].any() else np.nan
        start = np.nanmin(frame["issue_s"]) if frame["issue_s"].notna().any() else np.nan
        return float(end - start) if np.isfinite(end - start) else math.nan

    def _rate(self, count: float) -> float:
        if count == 0:  # nothing completed (or met the objective): none per second
            return 0.0
        duration = self.duration_s
        return count / duration if duration > 0 else math.nan

    @property
    def good(self) -> pd.Series:
        """Per request: completed and within both objectives (a one-token answer has no TPOT)."""
        frame = self.requests
        tpot_met = frame["tpot_ms"].isna() | (frame["tpot_ms"] <= self.objective.tpot_ms)
        return frame["ok"] & (frame["ttft_ms"] <= self.objective.ttft_ms) & tpot_met

    @property
    def goodput_per_s(self) -> float:
        """Requests per second that completed within both objectives."""
        return self._rate(int(self.good.sum()))

    @property
    def throughput_per_s(self) -> float:
        """Completed requests per second."""
        return self._rate(len(self.ok))

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens of completed requests per second."""
        return self._rate(float(self.ok["output_tokens"].sum()))

    @property
    def ttft_p99_ms(self) -> float:
        """p99 TTFT of completed requests (ms)."""
        return _p99(self.ok["ttft_ms"])

    @property
    def tpot_p99_ms(self) -> float:
        """p99 TPOT of completed requests (ms)."""
        return _p99(self.ok["tpot_ms"])

    @property
    def meets_objective(self) -> bool:
        """Valid, nothing failed, and p99 TTFT and p99 TPOT within the objective."""
        return (
            self.valid
            and self.failed == 0
            and len(self.ok) > 0
            and self.ttft_p99_ms <= self.objective.ttft_ms
            and not self.tpot_p99_ms > self.objective.tpot_ms
        )

    @property
    def client_overhead_ms(self) -> float:
        """Median of the client's TTFT minus the server's own, where the server sends its
        timestamps: what HTTP, the network and this client add (NaN otherwise)."""
        gap = (self.ok["ttft_ms"] - self.ok["server_ttft_ms"]).dropna()
        return float(gap.median()) if len(gap) else math.nan

    @property
    def cost_per_million_tokens(self) -> float | None:
        """The price per 1M output tokens at the measured output rate (None without a price)."""
        if self.price_per_hour is None:
            return None
        return cost_per_million(self.price_per_hour, self.output_tokens_per_s)

    def metrics(self) -> dict[str, Any]:
        """The headline numbers by name."""
        ok = self.ok
        itl = [g for gaps in ok["inter_token_ms"] for g in gaps]
        return {
            "requests": len(self.requests),
            "failed": self.failed,
            "goodput_per_s": self.goodput_per_s,
            "throughput_per_s": self.throughput_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "ttft_p50_ms": float(ok["ttft_ms"].median()) if len(ok) else math.nan,
            "ttft_p99_ms": self.ttft_p99_ms,
            "tpot_p50_ms": float(ok["tpot_ms"].median()) if len(ok) else math.nan,
            "tpot_p99_ms": self.tpot_p99_ms,
            "itl_p99_ms": float(np.percentile(itl, 99)) if itl else math.nan,
            "e2e_p99_ms": _p99(ok["e2e_ms"]),
            "client_overhead_ms": self.client_overhead_ms,
            "cost_per_million_tokens": self.cost_per_million_tokens,
            "meets_objective": self.meets_objective,
        }

    def summary(self) -> str:
        """The load, the latencies, goodput, failures and why a run is invalid."""
        m = self.metrics()
        s = self.settings
        load = (
            f"concurrency {s['concurrency']}"
            if s.get("concurrency")
            else f"{format_number(s['rate_per_s'])} requests/s"
            + (f" in bursts of {s['burst_size']}" if s.get("burst_size") else " (Poisson)")
            if s.get("rate_per_s")
            else f"one burst of {m['requests']}"
        )
        errors = self.requests.loc[~self.requests["ok"], "error"].value_counts()
        lines = [
            f"{self.url}: {m['requests']} requests at {load}, measured on "
            f"{machine_text(self.machine)}",
            f"objective {self.objective.describe()}: "
            + ("met" if m["meets_objective"] else "NOT met")
            + f"; goodput {format_number(m['goodput_per_s'])} requests/s",
            f"TTFT p50 / p99 {format_number(m['ttft_p50_ms'])} / "
            f"{format_number(m['ttft_p99_ms'])} ms; TPOT p50 / p99 "
            f"{format_number(m['tpot_p50_ms'])} / {format_number(m['tpot_p99_ms'])} ms; "
            f"ITL p99 {format_number(m['itl_p99_ms'])} ms; E2E p99 "
            f"{format_number(m['e2e_p99_ms'])} ms",
            f"throughput {format_number(m['throughput_per_s'])} requests/s, "
            f"{format_number(m['output_tokens_per_s'])} output tokens/s",
        ]
        if math.isfinite(m["client_overhead_ms"]):
            lines.append(
                f"client overhead on TTFT (vs the server's timestamps): "
                f"{format_number(m['client_overhead_ms'])} ms median"
            )
        if self.price_per_hour is not None:
            lines.append(
                f"cost {format_number(m['cost_per_million_tokens'])} per 1M output tokens at "
                f"{self.price_per_hour:g} per hour"
            )
        lines += [f"failed {count}: {error}" for error, count in errors.items()]
        lines += [f"INVALID: {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, every request included."""
        return {
            "url": self.url,
            "objective": self.objective.__dict__,
            "reasons": list(self.reasons),
            "settings": self.settings,
            "price_per_hour": self.price_per_hour,
            "machine": self.machine,
            "requests": json_rows(self.requests),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """As JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LmLoadResult:
        """Rebuild from `to_dict` output."""
        frame = pd.DataFrame(data["requests"], columns=REQUEST_COLUMNS)
        floats = [c for c in REQUEST_COLUMNS if c.endswith(("_s", "_ms")) and c != "inter_token_ms"]
        frame = frame.astype({**dict.fromkeys(floats, "float64"), "ok": "bool"})
        frame["error"] = frame["error"].fillna("")
        return cls(
            url=data["url"],
            objective=Objective(**data["objective"]),
            requests=frame,
            reasons=tuple(data.get("reasons", ())),
            settings=dict(data.get("settings") or {}),
            price_per_hour=data.get("price_per_hour"),
            machine=dict(data.get("machine") or {}),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LmLoadResult:
        """Rebuild from `to_json` output or the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "an lm-load result"))


def lm_load(
    url: str,
    *,
    rate_per_s: float | None = None,
    concurrency: int | None = None,
    burst_size: int | None = None,
    requests: int = 64,
    prompt: str
    | Sequence[str]
    | Sequence[Sequence[int]] = "The quick brown fox jumps over the lazy dog.",
    max_tokens: int = 32,
    model: str | None = None,
    objective: str | Objective | tuple[float, float] = "mlperf-llama2",
    price_per_hour: float | None = None,
    timeout_s: float = 60.0,
    seed: int = 0,
    api_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> LmLoadResult:
    """Load an OpenAI-compatible streaming endpoint and time every token of every request.

    Arrivals: ``rate_per_s`` alone is a Poisson process; with ``burst_size`` the requests
    come in bursts of that size whose starts are Poisson (same mean request rate);
    ``burst_size`` without a rate sends all ``requests`` at once; ``concurrency`` keeps
    that many requests in flight (a closed loop). Each request asks for ``max_tokens``
    greedy tokens (``temperature: 0``) with ``stream: true`` and the usage count.

    Args:
        url: ``http://host:port`` (``/v1/completions`` is added) or the full URL of
            ``/v1/completions`` or ``/v1/chat/completions``.
        rate_per_s: mean requests per second offered (open loop).
        concurrency: requests kept in flight instead (closed loop).
        burst_size: requests per burst.
        requests: how many requests to send.
        prompt: a text, texts used in turn, or token ids (one list of ints, or lists of
            them used in turn: the completions API takes ids, so a prompt's length in
            tokens is exact; not with the chat API).
        max_tokens: tokens asked for per request.
        model: the ``model`` field (vLLM and most servers need their served model's
            name); None: the first model the server's ``GET /v1/models`` lists, or no
            field when it lists none.
        objective: a preset of `OBJECTIVES`, an `Objective` or ``(ttft_ms, tpot_ms)``.
        price_per_hour: the serving machine's hourly price, for the cost per 1M tokens.
        timeout_s: a request not finished by then fails.
        seed: of the arrival schedule.
        api_key: sent as ``Authorization: Bearer``.
        extra_body: more request fields (``{"ignore_eos": True}`` for vLLM).

    Returns:
        An `LmLoadResult`; failed requests are counted there, never raised.

    Raises:
        InputError: a bad URL, objective, rate, count or price; both a rate and a
            concurrency, or neither a rate, a concurrency nor a burst.

    Example:
        >>> r = wb.lm_load("http://localhost:8000", rate_per_s=4, requests=32, model="m")
        >>> r.goodput_per_s, r.ttft_p99_ms, r.tpot_p99_ms
    """
    endpoint = Endpoint.parse(url)
    goal = objective_of(objective)
    requests = whole("requests", requests)
    max_tokens = whole("max_tokens", max_tokens)
    timeout_s = number("timeout_s", timeout_s, above=0.0)
    if price_per_hour is not None:
        cost_per_million(price_per_hour, 1.0)  # validates the price before any request
    if rate_per_s is not None:
        rate_per_s = number("rate_per_s", rate_per_s, above=0.0)
    if concurrency is not None:
        concurrency = whole("concurrency", concurrency)
    if burst_size is not None:
        burst_size = whole("burst_size", burst_size)
    if (rate_per_s is None) == (concurrency is None) and not (burst_size and rate_per_s is None):
        raise InputError(
            "give one of rate_per_s (Poisson or bursts), concurrency (requests in flight), "
            "or burst_size alone (every request at once)"
        )
    if concurrency is not None and burst_size is not None:
        raise InputError("burst_size goes with a rate or alone, not with concurrency")
    prompts = _prompts(prompt, endpoint.chat)
    if model is None:
        model = run_async(_served_model(endpoint, api_key, timeout_s))
    bodies = _bodies(endpoint, model, prompts, requests, max_tokens, extra_body or {})
    schedule = (
        None if concurrency is not None else _schedule(requests, rate_per_s, burst_size, seed)
    )
    records, _ = run_async(_drive(endpoint, bodies, schedule, concurrency, api_key, timeout_s))
    frame = _frame(records)
    return LmLoadResult(
        url=url,
        objective=goal,
        requests=frame,
        reasons=tuple(_generator_checks(frame, rate_per_s)),
        settings={
            "rate_per_s": rate_per_s,
            "burst_size": burst_size,
            "concurrency": concurrency,
            "max_tokens": max_tokens,
            "seed": seed,
            "timeout_s": timeout_s,
            "model": model,
        },
        price_per_hour=price_per_hour,
        machine=machine_record(),
    )


#: columns of `LmSloResult.points`
POINT_COLUMNS = [
    "rate_per_s", "goodput_per_s", "ttft_p99_ms", "tpot_p99_ms", "output_tokens_per_s",
    "failed", "passed", "reasons",
]  # fmt: skip


@dataclass(frozen=True)
class LmSloResult:
    """The highest Poisson rate an endpoint serves within a TTFT and TPOT objective.

    Attributes:
        url: the endpoint.
        objective: the objective every point's p99s had to meet.
        max_rate_per_s: the highest passing rate (0 when none passed).
        capacity_per_s: the completed requests/s of the closed-loop probe the search
            started from.
        points: every run of the search (`POINT_COLUMNS`).
        limited_by: why the next rate up failed.
        price_per_hour: for the cost per 1M output tokens at the rate found.
        settings: the search's settings.
        machine: where the client ran.
    """

    url: str
    objective: Objective
    max_rate_per_s: float
    capacity_per_s: float
    points: pd.DataFrame
    limited_by: str
    price_per_hour: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> pd.Series | None:
        """The passing point at the highest rate, or None."""
        passed = self.points[self.points["passed"]]
        return passed.loc[passed["rate_per_s"].idxmax()] if len(passed) else None

    @property
    def cost_per_million_tokens(self) -> float | None:
        """Price per 1M output tokens at the rate found (None without a price or a rate)."""
        best = self.best
        if self.price_per_hour is None or best is None:
            return None
        return cost_per_million(self.price_per_hour, float(best["output_tokens_per_s"]))

    def summary(self) -> str:
        """The rate found, its cost, why the search stopped, and every point."""
        cost = self.cost_per_million_tokens
        return "\n".join(
            [
                f"highest Poisson rate within {self.objective.describe()} (p99) at {self.url}: "
                f"{format_number(self.max_rate_per_s)} requests/s, measured from "
                f"{machine_text(self.machine)}",
                f"closed-loop capacity probe: {format_number(self.capacity_per_s)} requests/s",
                *(
                    [
                        f"cost {format_number(cost)} per 1M output tokens at "
                        f"{self.price_per_hour:g} per hour"
                    ]
                    if cost is not None
                    else []
                ),
                f"limited by: {self.limited_by}",
                frame_text(self.points.drop(columns=["reasons"])),
            ]
        )

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "url": self.url,
            "objective": self.objective.__dict__,
            "max_rate_per_s": self.max_rate_per_s,
            "capacity_per_s": self.capacity_per_s,
            "limited_by": self.limited_by,
            "price_per_hour": self.price_per_hour,
            "settings": self.settings,
            "machine": self.machine,
            "points": json_rows(self.points),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """As JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LmSloResult:
        """Rebuild from `to_json` output or the file at a path holding it."""
        data = load_json(text_or_path, "an lm-slo result")
        points = pd.DataFrame(data["points"], columns=POINT_COLUMNS)
        measured = [c for c in POINT_COLUMNS if c.endswith(("_ms", "_per_s"))]
        return cls(
            url=data["url"],
            objective=Objective(**data["objective"]),
            max_rate_per_s=data["max_rate_per_s"],
            capacity_per_s=data["capacity_per_s"],
            points=points.astype(dict.fromkeys(measured, "float64")),
            limited_by=data["limited_by"],
            price_per_hour=data.get("price_per_hour"),
            settings=dict(data.get("settings") or {}),
            machine=dict(data.get("machine") or {}),
        )


def lm_slo(
    url: str,
    objective: str | Objective | tuple[float, float] = "mlperf-llama2",
    *,
    steps: int = 5,
    requests: int = 64,
    probe_concurrency: int = 8,
    price_per_hour: float | None = None,
    **load: Any,
) -> LmSloResult:
    """Bisect the Poisson rate for the highest one whose p99 TTFT and TPOT meet ``objective``.

    A closed-loop probe (``probe_concurrency`` in flight) estimates the capacity; then
    ``steps`` runs of ``requests`` each bisect the rate between 0 and 1.5x that. A point
    passes when its run is valid (the client kept the schedule), nothing failed, and
    both p99s are within the objective, like ``workbench slo``'s server points.

    Args:
        url: the endpoint (`lm_load`).
        objective: a preset name, an `Objective` or ``(ttft_ms, tpot_ms)``.
        steps: load runs in the bisection.
        requests: requests per run.
        probe_concurrency: in-flight requests of the capacity probe.
        price_per_hour: for the cost per 1M output tokens at the rate found.
        **load: more `lm_load` arguments (``prompt``, ``max_tokens``, ``model``, ...).

    Returns:
        An `LmSloResult` with every point.

    Raises:
        InputError: as `lm_load`; a probe in which every request failed (its first error).

    Example:
        >>> wb.lm_slo("http://localhost:8000", "interactive", model="m").max_rate_per_s
    """
    goal = objective_of(objective)
    steps = whole("steps", steps)
    probe = lm_load(url, concurrency=probe_concurrency, requests=requests, objective=goal, **load)
    if not len(probe.ok):
        raise InputError(f"every probe request to {url} failed: {probe.requests['error'].iloc[0]}")
    capacity = probe.throughput_per_s
    passed_rate, failed_rate = 0.0, 1.5 * capacity
    limited_by = "every point passed: the search range ends at 1.5x the probe's throughput"
    rows = []
    for _ in range(steps):
        rate = (passed_rate + failed_rate) / 2
        run = lm_load(url, rate_per_s=rate, requests=requests, objective=goal, **load)
        why = list(run.reasons)
        if run.failed:
            why.append(f"{run.failed} requests failed")
        if run.ttft_p99_ms > goal.ttft_ms:
            why.append(f"TTFT p99 {format_number(run.ttft_p99_ms)} ms over {goal.ttft_ms:g}")
        if run.tpot_p99_ms > goal.tpot_ms:
            why.append(f"TPOT p99 {format_number(run.tpot_p99_ms)} ms over {goal.tpot_ms:g}")
        passed = run.meets_objective
        rows.append(
            {
                "rate_per_s": rate,
                "goodput_per_s": run.goodput_per_s,
                "ttft_p99_ms": run.ttft_p99_ms,
                "tpot_p99_ms": run.tpot_p99_ms,
                "output_tokens_per_s": run.output_tokens_per_s,
                "failed": run.failed,
                "passed": passed,
                "reasons": "; ".join(why),
            }
        )
        if passed:
            passed_rate = rate
        else:
            failed_rate = rate
            limited_by = f"at {format_number(rate)}/s: " + "; ".join(why)
    return LmSloResult(
        url=url,
        objective=goal,
        max_rate_per_s=passed_rate,
        capacity_per_s=capacity,
        points=pd.DataFrame(rows, columns=POINT_COLUMNS),
        limited_by=limited_by,
        price_per_hour=price_per_hour,
        settings={"steps": steps, "requests": requests, **{k: str(v) for k, v in load.items()}},
        machine=machine_record(),
    )
