"""The streaming load generator's own cost: its overhead on TTFT, and concurrent streams.

1. **Overhead on TTFT.** ``workbench serve-lm`` runs in its own process (a random-weight
   Llama, ``--model``, default ``llama-100m``; torch) and stamps every chunk with its own
   milliseconds from reading the request (``server_ms``). `wb.lm_load` sends ``--requests``
   requests one at a time (concurrency 1, so no request queues behind another) with a
   prompt of ``--prompt-length`` tokens. Per request the client's TTFT minus the server's
   is what the client, HTTP and the loopback add; reported as the median over the
   median server TTFT (issue 31's target: <= 2%).
2. **Concurrent streams.** A fake server that answers at once (its own process, asyncio,
   ``--tokens`` chunks per stream) is loaded at ``--concurrency`` requests in flight
   (default 200) for ``--streams`` requests; reported: failures (must be 0), the most
   streams open at once (from the requests' issue and completion times; target >= 200),
   requests/s and chunks/s.

    python benchmarks/lm_load.py [--model llama-100m] [--requests 50] [--concurrency 200]
        [--streams 2000] [--quick]

``--quick`` proves the script works (llama-tiny, 8 requests, 400 streams) and writes
``results/lm_load.quick.*``; it is not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_server(port: int, tokens: int) -> None:
    """An endpoint that streams ``tokens`` chunks at once (no model): the client's limit."""
    chunk = b'data: {"choices": [{"index": 0, "text": "x"}]}\n\n'
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        + chunk * tokens
        + b"data: [DONE]\n\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        print("ready", flush=True)
        await server.serve_forever()

    asyncio.run(serve())


def _start(command: list[str], ready: str, timeout_s: float = 300) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if ready in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"{command[:4]} did not start")


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    from workbench.scenarios.lm_load import lm_load

    port = _free_port()
    command = [sys.executable, "-m", "workbench.cli", "serve-lm", args.model]
    server = _start([*command, "--port", str(port), "--batch-window-ms", "0"], "serving")
    try:
        url = f"http://127.0.0.1:{port}"
        prompt = "a" * args.prompt_length  # one token per byte (no tokenizer: bytes)
        lm_load(url, concurrency=1, requests=2, prompt=prompt, max_tokens=2)  # warm
        r = lm_load(url, concurrency=1, requests=args.requests, prompt=prompt, max_tokens=2)
    finally:
        server.terminate()
        server.wait()
    ok = r.ok
    gap = (ok["ttft_ms"] - ok["server_ttft_ms"]).to_numpy()
    server_ttft = float(np.median(ok["server_ttft_ms"]))
    return {
        "model": args.model,
        "prompt_tokens": args.prompt_length,
        "requests": len(r.requests),
        "failed": r.failed,
        "client_ttft_ms_median": float(np.median(ok["ttft_ms"])),
        "server_ttft_ms_median": server_ttft,
        "overhead_ms_median": float(np.median(gap)),
        "overhead_ms_p90": float(np.percentile(gap, 90)),
        "overhead_share": float(np.median(gap)) / server_ttft,
    }


def streams(args: argparse.Namespace) -> dict[str, Any]:
    from workbench.scenarios.lm_load import lm_load

    port = _free_port()
    server = _start(
        [sys.executable, __file__, "--fake-server", str(port), "--tokens", str(args.tokens)],
        "ready",
    )
    try:
        start = time.perf_counter()
        r = lm_load(
            f"http://127.0.0.1:{port}",
            concurrency=args.concurrency,
            requests=args.streams,
            max_tokens=args.tokens,
            timeout_s=120,
        )
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()
    frame = r.requests
    events = sorted(
        [(t, 1) for t in frame["issue_s"]] + [(t, -1) for t in frame["completion_s"].fillna(np.inf)]
    )
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return {
        "concurrency": args.concurrency,
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "failed": r.failed,
        "errors": sorted(set(frame.loc[~frame["ok"], "error"]))[:3],
        "most_open_at_once": most,
        "requests_per_s": args.streams / wall,
        "chunks_per_s": float(frame["chunks"].sum()) / wall,
        "ttft_p99_ms": r.ttft_p99_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="llama-100m")
    parser.add_argument("--prompt-length", type=int, default=128)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="smoke test, not a measurement")
    parser.add_argument("--fake-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_server is not None:
        return fake_server(args.fake_server, args.tokens)
    if args.quick:
        args.model, args.requests, args.streams = "llama-tiny", 8, 400
    over = overhead(args)
    many = streams(args)
    table = "\n".join(
        [
            "| measure | value | target |",
            "|---|---|---|",
            f"| client overhead on TTFT ({over['model']}, {over['prompt_tokens']}-token "
            f"prompt, {over['requests']} requests) | {over['overhead_ms_median']:.3g} ms median "
            f"(p90 {over['overhead_ms_p90']:.3g}) on a server TTFT of "
            f"{over['server_ttft_ms_median']:.3g} ms = {over['overhead_share']:.2%} | <= 2% |",
            f"| concurrent streams against an instant server ({many['streams']} requests, "
            f"{many['tokens_per_stream']} chunks each) | {many['most_open_at_once']} open at "
            f"once, {many['failed']} failed, {many['requests_per_s']:.0f} requests/s, "
            f"{many['chunks_per_s']:.0f} chunks/s | >= 200, 0 failed |",
        ]
    )
    print(table)
    print(json.dumps({"overhead": over, "streams": many}, indent=1))
    write_results("lm_load", {"overhead": over, "streams": many}, table, quick=args.quick)


if __name__ == "__main__":
    main()
