"""The OpenAI-compatible streaming load generator, against a tiny asyncio fake server and
against ``workbench serve-lm`` on llama-tiny."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import InputError
from workbench.scenarios.lm_load import (
    REQUEST_COLUMNS,
    Endpoint,
    LmLoadResult,
    LmSloResult,
    Objective,
    lm_load,
    lm_slo,
    objective_of,
)

TOKENS = 4


def _chunk(text: str, server_ms: float) -> bytes:
    data = {"choices": [{"index": 0, "text": text}], "workbench": {"server_ms": server_ms}}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers by the first path component: how a real endpoint can go wrong."""
    line = await reader.readline()
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b""):
        if header.lower().startswith(b"content-length"):
            length = int(header.split(b":")[1])
    body = json.loads(await reader.readexactly(length) or b"{}")
    mode = line.split()[1].decode().split("/")[1]
    if line.startswith(b"GET"):  # the model listing, on the well-behaved endpoint only
        listing = b'{"data": [{"id": "fake-model"}]}' if mode == "ok" else b"no"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(listing), listing))
        writer.close()
        return
    if mode == "ok" and body.get("model") != "fake-model":
        writer.write(b"HTTP/1.1 400 Bad\r\nContent-Length: 16\r\n\r\nmodel is missing")
        writer.close()
        return
    stream_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    try:
        await _answer(reader, writer, mode, stream_head, body)
    finally:
        writer.close()


async def _answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    mode: str,
    stream_head: bytes,
    body: dict,
) -> None:
    if mode == "hang":  # answers nothing until the client gives up and closes
        await reader.read()
    elif mode == "status":
        writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 12\r\n\r\noverloaded\r\n")
    elif mode == "plain":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}")
    elif mode == "malformed":
        writer.write(stream_head + b"\r\n" + _chunk("a", 1.0) + b"data: {not json\n\n")
    elif mode == "odd":  # JSON, but not shaped as a completions chunk
        writer.write(stream_head + b"\r\n" + b'data: {"choices": [5], "workbench": 3}\n\n')
    elif mode == "huge":  # one line past asyncio's 64 KiB line limit
        writer.write(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"x" * 70000 + b"\r\n\r\n")
    elif mode == "drop":
        writer.write(stream_head + b"\r\n" + _chunk("a", 1.0) + _chunk("b", 2.0))
    elif mode == "slow":  # the first token after 50 ms
        writer.write(stream_head + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(_chunk("a", 50.0) + _chunk("b", 50.0) + b"data: [DONE]\n\n")
    else:  # "ok": chunked transfer, one token a chunk, a usage chunk, then [DONE]
        writer.write(stream_head + b"Transfer-Encoding: chunked\r\n\r\n")
        events = [_chunk(f"t{i}", 1.0 + i) for i in range(body["max_tokens"])]
        usage = {"choices": [], "usage": {"completion_tokens": body["max_tokens"]}}
        events += [b"data: " + json.dumps(usage).encode() + b"\n\n", b"data: [DONE]\n\n"]
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    await writer.drain()


class _Fake:
    """The fake endpoint on a thread with its own event loop (as `LmServer.start`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(_fake, "127.0.0.1", 0, backlog=1024)
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    endpoint = _Fake()
    yield f"http://127.0.0.1:{endpoint.server.sockets[0].getsockname()[1]}"
    endpoint.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_token_of_a_chunked_stream_is_timed(fake: str) -> None:
    r = lm_load(f"{fake}/ok", concurrency=3, requests=6, max_tokens=TOKENS)
    assert r.failed == 0 and r.valid
    assert r.settings["model"] == "fake-model"  # asked of GET /v1/models, then sent
    assert (r.requests["output_tokens"] == TOKENS).all()
    assert (r.requests["chunks"] == TOKENS).all()
    assert all(len(gaps) == TOKENS - 1 for gaps in r.requests["inter_token_ms"])
    assert (r.requests["server_ttft_ms"] == 1.0).all()
    assert (r.requests["ttft_ms"] > 0).all() and (
        r.requests["e2e_ms"] >= r.requests["ttft_ms"]
    ).all()
    assert np.isfinite(r.client_overhead_ms)
    assert r.goodput_per_s == pytest.approx(6 / r.duration_s)
    assert r.meets_objective
    assert "goodput" in r.summary() and "goodput" in r._repr_html_()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("hang", "timed out after 0.3 s"),
        ("status", "HTTP 503: overloaded"),
        ("plain", "not a stream"),
        ("malformed", "malformed chunk"),
        ("odd", "malformed chunk (a choice without text)"),
        ("huge", "malformed answer"),
        ("drop", "ended before data: [DONE] after 2 content chunks"),
    ],
    ids=[
        "times-out",
        "refuses-with-status",
        "not-streaming",
        "malformed",
        "odd-chunk",
        "overlong-line",
        "drops-mid-stream",
    ],
)
def test_a_broken_endpoint_fails_requests_never_fast_ones(
    fake: str, mode: str, message: str
) -> None:
    r = lm_load(f"{fake}/{mode}", burst_size=3, requests=3, timeout_s=0.3)
    assert r.failed == 3
    assert all(message in e for e in r.requests["error"]), r.requests["error"].tolist()
    assert r.requests["ttft_ms"].isna().all() and r.goodput_per_s == 0
    assert not r.meets_objective
    assert f"failed 3: {r.requests['error'].iloc[0]}" in r.summary()


def test_a_refused_connection_is_a_failed_request() -> None:
    r = lm_load(f"http://127.0.0.1:{_closed_port()}", burst_size=2, requests=2)
    assert r.failed == 2 and "connection refused" in r.requests["error"].iloc[0]


def test_a_rate_the_client_cannot_generate_is_said_not_lowered() -> None:
    r = lm_load(f"http://127.0.0.1:{_closed_port()}", rate_per_s=1e7, requests=400)
    assert not r.valid
    assert "the client cannot generate" in r.reasons[0]
    assert r.settings["rate_per_s"] == 1e7
    assert "INVALID: the client cannot generate" in r.summary()


def test_the_client_is_behind_on_lag_or_a_rate_it_fell_short_of_not_on_jitter() -> None:
    from workbench.scenarios.lm_load import _generator_checks

    scheduled = np.arange(6) * 0.008  # 125 requests/s
    jitter = scheduled + np.array([0, 0, 0, 0, 0, 0.003])  # the last one 3 ms late
    behind = scheduled * 2  # issued at half the rate
    frame = pd.DataFrame({"scheduled_s": scheduled, "issue_s": jitter})
    assert _generator_checks(frame, 125.0) == []
    frame["issue_s"] = behind
    assert "cannot generate 125 requests/s" in _generator_checks(frame, 125.0)[0]
    frame["issue_s"] = scheduled + 0.02  # every request 20 ms late
    assert "median issue lag 20 ms" in _generator_checks(frame, 125.0)[0]


def _result(ttft: list[float], tpot: list[float], ok: list[bool]) -> LmLoadResult:
    n = len(ttft)
    frame = pd.DataFrame(
        {
            "request": range(n),
            "scheduled_s": 0.0,
            "issue_s": 0.0,
            "first_token_s": np.array(ttft) / 1e3,
            "completion_s": 2.0,
            "ttft_ms": ttft,
            "tpot_ms": tpot,
            "e2e_ms": 2000.0,
            "output_tokens": 5,
            "chunks": 5,
            "server_ttft_ms": math.nan,
            "ok": ok,
            "error": ["" if k else "refused" for k in ok],
            "inter_token_ms": [[1.0, 2.0]] * n,
        },
        columns=REQUEST_COLUMNS,
    )
    return LmLoadResult("http://x", Objective(100.0, 10.0), frame, price_per_hour=3.6)


def test_goodput_counts_requests_meeting_both_objectives() -> None:
    r = _result([50, 150, 50, 50], [5, 5, 20, math.nan], [True, True, True, True])
    # over TTFT, over TPOT, and a one-token answer (no TPOT) that met its TTFT
    assert r.good.tolist() == [True, False, False, True]
    assert r.goodput_per_s == pytest.approx(2 / 2.0)
    assert not r.meets_objective  # p99s over both
    assert r.cost_per_million_tokens == pytest.approx(3.6 / 3600 / (20 / 2.0) * 1e6)
    failed = _result([50, 50], [5, 5], [True, False])
    assert failed.failed == 1 and not failed.meets_objective


def test_results_round_trip_through_json(fake: str) -> None:
    r = lm_load(f"{fake}/ok", rate_per_s=200, requests=4, max_tokens=3, price_per_hour=1.0)
    text = r.to_json()
    back = LmLoadResult.from_json(text)
    assert back.to_json() == text  # nothing lost or changed
    pd.testing.assert_frame_equal(back.requests, r.requests)
    assert back.metrics() == pytest.approx(r.metrics(), nan_ok=True)
    assert back.machine == r.machine and back.machine["cores"] >= 1


def test_arguments_are_checked_in_one_line() -> None:
    with pytest.raises(InputError, match="give one of rate_per_s"):
        lm_load("http://x:1", rate_per_s=1, concurrency=2)
    with pytest.raises(InputError, match="not an http"):
        lm_load("ftp://x", rate_per_s=1)
    with pytest.raises(InputError, match="the chat API takes text prompts"):
        lm_load("http://x:1/v1/chat/completions", rate_per_s=1, prompt=[1, 2])
    with pytest.raises(InputError, match="lists of token ids"):
        lm_load("http://x:1", rate_per_s=1, prompt=[[1, 2.5]])
    with pytest.raises(InputError, match="unknown objective"):
        objective_of("fastest")
    assert objective_of("interactive") == Objective(450.0, 40.0, "interactive")
    assert Endpoint.parse("http://h:9").path == "/v1/completions"
    assert Endpoint.parse("https://h/v1/chat/completions").chat


def test_slo_search_finds_a_rate_or_says_what_limited_it(fake: str) -> None:
    # a server of ~20 requests/s (50 ms each, one at a time in the probe): rates any
    # client generates on time, so the search's verdicts come from the objective alone
    url = f"{fake}/slow"
    found = lm_slo(url, steps=2, requests=6, probe_concurrency=1, price_per_hour=1.0)
    assert found.max_rate_per_s > 0 and found.points["passed"].any()
    assert found.cost_per_million_tokens is not None
    assert LmSloResult.from_json(found.to_json()).to_json() == found.to_json()
    strict = lm_slo(url, (10.0, 1000.0), steps=2, requests=4, probe_concurrency=1)
    assert strict.max_rate_per_s == 0
    assert "TTFT p99" in strict.limited_by


def test_cli_prints_the_summary_and_fails_on_a_dead_endpoint(
    fake: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lm-load", f"{fake}/ok", "--concurrency", "2", "--requests", "2"]) == 0
    assert "goodput" in capsys.readouterr().out
    dead = f"http://127.0.0.1:{_closed_port()}"
    assert main(["lm-load", dead, "--burst", "2", "--requests", "2"]) == 1
    assert "connection refused" in capsys.readouterr().out
    assert main(["lm-load", dead, "--rate", "1", "--concurrency", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_serve_lm_says_in_one_line_what_it_cannot_serve(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve-lm", "llama-tiny", "--backend", "profile-only"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve-lm", "llama-tiny", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"workbench: error: cannot listen on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, object]]:
    from workbench.cli.lm_server import LmServer
    from workbench.loaders.language import language_model

    server = LmServer(
        language_model("llama-tiny"), "torch", name="llama-tiny", max_batch=4, batch_window_ms=200
    )
    url, stop = server.start()
    yield url, server
    stop()


def test_serve_lm_streams_batches_and_matches_its_plain_answer(
    served: tuple[str, object],
) -> None:
    url, server = served
    r = lm_load(url, burst_size=4, requests=4, max_tokens=3, prompt="hello")
    assert r.failed == 0 and (r.requests["output_tokens"] == 3).all()
    ids = lm_load(url, concurrency=1, requests=2, max_tokens=2, prompt=[[1, 2, 3], [4, 5]])
    assert ids.failed == 0 and (ids.requests["output_tokens"] == 2).all()
    assert r.requests["server_ttft_ms"].notna().all()
    assert max(server.batch_sizes) > 1  # type: ignore[attr-defined]
    chat = lm_load(f"{url}/v1/chat/completions", concurrency=1, requests=1, max_tokens=2)
    assert chat.failed == 0 and chat.requests["output_tokens"].iloc[0] == 2

    async def send(request: bytes) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection(*url[7:].split(":"))
        writer.write(request)
        answer = await reader.read()
        writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        return head, payload

    def post(body: dict[str, object], header: bytes = b"") -> Any:
        data = json.dumps(body).encode()
        head = b"POST /v1/completions HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n"
        return send(head % (header, len(data)) + data)

    head, payload = asyncio.run(post({"prompt": "hello", "max_tokens": 3}))
    assert b"200" in head.split(b"\r\n")[0]
    streamed = asyncio.run(post({"prompt": "hello", "max_tokens": 3, "stream": True}))[1]
    texts = [
        json.loads(line[6:])["choices"][0]["text"]
        for line in streamed.split(b"\n")
        if line.startswith(b"data: {")
    ]
    assert json.loads(payload)["choices"][0]["text"] == "".join(texts)
    head, payload = asyncio.run(post({"prompt": "hello", "max_tokens": 0}))
    assert b"400" in head and b"max_tokens must be a positive integer" in payload
    head, payload = asyncio.run(post({"prompt": "x" * 300, "max_tokens": 2}))
    assert b"400" in head and b"exceed the context of 256" in payload
    head, payload = asyncio.run(post({"prompt": "hi", "pad": "x" * 70000}))
    assert b"200" in head  # a long body is fine: only lines are limited
    head, payload = asyncio.run(post({"prompt": "hi"}, b"X-Pad: %s\r\n" % (b"x" * 70000)))
    assert b"400" in head and b"too long" in payload
