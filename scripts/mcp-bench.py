"""Tool calls per second: `read_text_file` of a 4 KiB file, one call after
another, through the MCP Python SDK.

    .venv/test-services/bin/python scripts/mcp-bench.py --anyfs target/release/anyfs \
        [--reference /path/to/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js] \
        [--calls 2000] [--runs 5]

Targets: `anyfs mcp` over stdio; the reference filesystem server (Node.js)
over stdio, if given; `anyfs serve`'s `/mcp` over HTTP; and, for scale, the
same file through the service's HTTP files API (`GET /v1/files/...`). The
runs are interleaved; each line gives the median and the range.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

CONTENT = ("0123456789abcdef" * 63 + "\n") * 4  # 4,068 bytes of text
CONTENT = CONTENT + "x" * (4096 - len(CONTENT))


async def timed_calls(session, path, calls):
    # Warm up, then time.
    for _ in range(20):
        await session.call_tool("read_text_file", {"path": path})
    start = time.perf_counter()
    for _ in range(calls):
        result = await session.call_tool("read_text_file", {"path": path})
        assert not result.is_error, result
    return calls / (time.perf_counter() - start)


async def over_stdio(command, args, path, calls, setup=None):
    params = StdioServerParameters(command=command, args=args)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            if setup:
                await setup(session)
            return await timed_calls(session, path, calls)


async def over_http(base, secret, calls):
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
        async with streamable_http_client(base + "/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await timed_calls(session, "/bench/file.txt", calls)


async def files_api(base, secret, calls):
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
        url = base + "/v1/files/bench/file.txt"
        for _ in range(20):
            (await client.get(url)).raise_for_status()
        start = time.perf_counter()
        for _ in range(calls):
            response = await client.get(url)
            assert response.status_code == 200 and len(response.content) == 4096
        return calls / (time.perf_counter() - start)


def start_service(anyfs, data):
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [anyfs, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/healthz")
            break
        except OSError:
            time.sleep(0.05)
    request = urllib.request.Request(base + "/v1/accounts", data=json.dumps({"name": "bench"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    secret = json.loads(urllib.request.urlopen(request).read())["secret"]
    put = urllib.request.Request(base + "/v1/files/bench/file.txt", data=CONTENT.encode(),
                                 headers={"Authorization": f"Bearer {secret}"}, method="PUT")
    urllib.request.urlopen(put)
    return proc, base, secret


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anyfs", required=True)
    parser.add_argument("--reference")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="mcp-bench-")
    host_dir = os.path.join(work, "dir")
    os.makedirs(host_dir)
    with open(os.path.join(host_dir, "file.txt"), "w") as f:
        f.write(CONTENT)
    db = os.path.join(work, "work.db")

    async def write_file(session):
        await session.call_tool("write_file", {"path": "/bench/file.txt", "content": CONTENT})

    proc, base, secret = start_service(args.anyfs, os.path.join(work, "data"))
    targets = {
        "anyfs mcp (stdio, SQLite workspace)": lambda: over_stdio(
            args.anyfs, ["mcp", db], "/bench/file.txt", args.calls, write_file),
        "anyfs serve /mcp (HTTP)": lambda: over_http(base, secret, args.calls),
        "anyfs serve GET /v1/files (HTTP, no MCP)": lambda: files_api(base, secret, args.calls),
    }
    if args.reference:
        targets["reference server-filesystem (stdio, Node.js)"] = lambda: over_stdio(
            "node", [args.reference, host_dir], os.path.join(host_dir, "file.txt"), args.calls)
    results = {name: [] for name in targets}
    try:
        for _ in range(args.runs):
            for name, run in targets.items():
                results[name].append(asyncio.run(run()))
    finally:
        proc.terminate()
        proc.wait()
    for name, rates in results.items():
        print(f"{name}: median {statistics.median(rates):,.0f} calls/s "
              f"(range {min(rates):,.0f}-{max(rates):,.0f}, {args.runs} runs of {args.calls})")


if __name__ == "__main__":
    main()
