"""Drives the gateway serving the conformance fixture backend with the official Python MCP SDK
(`mcp` 2.3.0), in the connect mode given on the command line.

Usage: python sdk_fixture.py <MCP URL> <legacy|auto>
  MCP_HEADERS  optional JSON object of extra request headers (e.g. {"X-Dev-Mode": "..."})

Lists tools, prompts and resources page by page (the test gateway uses catalog.page_size: 2, so
every list needs several pages), calls tools with plain JSON, rich and error replies, reads a
static and a templated resource, gets prompts and asks for completions. Prints one JSON object
on stdout for tests/it/interop_clients.rs to assert on; any failure exits non-zero with the
traceback on stderr.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PromptReference

MAX_PAGES = 100


async def all_pages(fetch, key):
    """Every item of a paginated list, and how many pages it took."""
    items, pages, cursor = [], 0, None
    while True:
        page = await fetch(cursor=cursor, cache_mode="bypass")
        pages += 1
        items.extend(getattr(page, key))
        cursor = page.next_cursor
        if cursor is None or pages >= MAX_PAGES:
            return items, pages


def dump(model):
    """A pydantic model as JSON-ready data, with the wire's camelCase names."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main(url: str, mode: str) -> dict:
    headers = json.loads(os.environ.get("MCP_HEADERS") or "{}")
    http = httpx2.AsyncClient(timeout=30, headers=headers)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        tools, tool_pages = await all_pages(client.list_tools, "tools")
        prompts, prompt_pages = await all_pages(client.list_prompts, "prompts")
        resources, resource_pages = await all_pages(client.list_resources, "resources")
        templates, _ = await all_pages(client.list_resource_templates, "resource_templates")
        echo = await client.call_tool("echo", {"message": "hello from the python sdk"})
        image = await client.call_tool("test_image_content", {})
        error = await client.call_tool("test_error_handling", {})
        static_text = await client.read_resource("test://static-text", cache_mode="bypass")
        templated = await client.read_resource("test://template/42/data", cache_mode="bypass")
        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"})
        completion = await client.complete(
            PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
            {"name": "arg1", "value": "par"},
        )
        return {
            "mode": mode,
            "protocolVersion": client.protocol_version,
            # Which handshake connected: auto mode probes server/discover, which the gateway
            # answers (2026-07-28, stateless); legacy mode runs initialize.
            "handshake": "initialize" if client.session.initialize_result is not None else "discover",
            "serverName": client.server_info.name if client.server_info else None,
            "tools": [t.name for t in tools],
            "toolPages": tool_pages,
            "prompts": [p.name for p in prompts],
            "promptPages": prompt_pages,
            "resources": [r.uri for r in resources],
            "resourcePages": resource_pages,
            "templates": [t.uri_template for t in templates],
            "echo": dump(echo),
            "image": dump(image),
            "error": dump(error),
            "staticText": dump(static_text),
            "templated": dump(templated),
            "prompt": dump(prompt),
            "completion": dump(completion),
        }


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("legacy", "auto"):
        sys.exit("usage: sdk_fixture.py <MCP URL> <legacy|auto>")
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
