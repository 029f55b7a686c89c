"""Stdio round trips with the official MCP Python SDK client, for comparison.
Usage: sdk_client_bench.py N SERVER [ARGS...]"""
import asyncio
import json
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main():
    n = int(sys.argv[1])
    params = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
    async with stdio_client(params) as (read, write):
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
    print(json.dumps({"client": "official Python SDK", "requests": n, "roundTripsPerSecond": round(n / elapsed),
                      "p50Us": round(samples[n // 2], 1), "p99Us": round(samples[int(n * 0.99)], 1)}))


asyncio.run(main())
