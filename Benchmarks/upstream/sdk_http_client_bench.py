"""HTTP round trips with the official MCP Python SDK client (Streamable HTTP), for comparison.
Usage: sdk_http_client_bench.py N URL"""
import asyncio
import json
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main():
    n, url = int(sys.argv[1]), sys.argv[2]
    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            samples = []
            start = time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                await session.call_tool("echo", {"i": i})
                samples.append((time.perf_counter() - t) * 1e6)
            elapsed = time.perf_counter() - start
    samples.sort()
    print(json.dumps({"client": "official Python SDK (HTTP)", "requests": n, "roundTripsPerSecond": round(n / elapsed),
                      "p50Us": round(samples[n // 2], 1), "p99Us": round(samples[int(n * 0.99)], 1)}))


asyncio.run(main())
