"""Drives `cortex-gateway demo` with the official Python MCP SDK (`mcp` 2.3.0).

Usage: python sdk_demo.py <MCP URL>

Connects in the session-based ("legacy") era, lists every tool (following nextCursor), calls
demo_echo and demo_save_note, and prints one JSON object on stdout for tests/it/python_sdk.rs to
assert on. Any failure propagates as a non-zero exit with the traceback on stderr.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def text_of(result):
    """The text blocks of a CallToolResult, joined."""
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(url: str) -> dict:
    http = httpx2.AsyncClient(timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        names = []
        pages = 0
        cursor = None
        while True:
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            pages += 1
            names.extend(tool.name for tool in page.tools)
            cursor = page.next_cursor
            if cursor is None or pages > 100:
                break
        echo = await client.call_tool("demo_echo", {"message": "hello from the python sdk"})
        saved = await client.call_tool("demo_save_note", {"text": "written by the python sdk"})
        return {
            "protocolVersion": client.protocol_version,
            "serverName": client.server_info.name if client.server_info else None,
            "pages": pages,
            "tools": names,
            "echo": {
                "isError": echo.is_error,
                "text": text_of(echo),
                "structured": echo.structured_content,
            },
            "save": {
                "isError": saved.is_error,
                "text": text_of(saved),
                "structured": saved.structured_content,
            },
        }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: sdk_demo.py <MCP URL>")
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
