"""Calls the native fixture's `ask_roots` and `ask_url` tools THROUGH the gateway (backend `py`)
with the official Python MCP SDK (`mcp` 2.3.0) as the client: the server's `roots/list` is
answered by this client's list_roots callback, and its URL-mode `elicitation/create` by its
elicitation callback. Prints one JSON object for tests/it/native_roots_url.rs.

Usage: python native_roots_url.py <MCP URL>
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(url: str) -> dict:
    roots_asked, url_requests = [], []

    async def on_roots(context):
        roots_asked.append(True)
        return types.ListRootsResult(
            roots=[
                types.Root(uri="file:///work/alpha", name="alpha"),
                types.Root(uri="file:///work/beta", name="beta"),
            ]
        )

    async def on_elicitation(context, params):
        url_requests.append(
            {
                "mode": getattr(params, "mode", None),
                "url": getattr(params, "url", None),
                "elicitationId": getattr(params, "elicitation_id", None),
                "message": params.message,
            }
        )
        return types.ElicitResult(action="accept")

    http = httpx2.AsyncClient(timeout=60)
    client = Client(
        streamable_http_client(url, http_client=http),
        mode="legacy",
        list_roots_callback=on_roots,
        elicitation_callback=on_elicitation,
    )
    async with http, client:
        roots = await client.call_tool("py_ask_roots", {})
        linked = await client.call_tool("py_ask_url", {})
    return {
        "roots": text_of(roots),
        "rootsAsked": len(roots_asked),
        "url": text_of(linked),
        "urlRequests": url_requests,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
