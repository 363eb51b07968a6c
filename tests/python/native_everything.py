"""Drives `@modelcontextprotocol/server-everything` THROUGH the gateway (a native backend with
id `ev`, kind given by the test) with the official Python MCP SDK (`mcp` 2.3.0) as the client.

Usage: python native_everything.py <MCP URL>

Lists tools, prompts, resources and templates (every page), calls tools, reads a resource and a
templated one, gets a prompt, asks for completions, receives progress and log notifications, and
answers the server's sampling and elicitation requests from this client's callbacks. Prints one
JSON object on stdout for tests/it/native_everything.rs to assert on; any failure exits non-zero
with the traceback on stderr.
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PromptReference

MAX_PAGES = 100


async def all_pages(fetch, key):
    items, cursor = [], None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor=cursor, cache_mode="bypass")
        items.extend(getattr(page, key))
        cursor = page.next_cursor
        if cursor is None:
            break
    return items


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(url: str) -> dict:
    sampled, elicited, logs = [], [], []

    async def on_sampling(context, params):
        sampled.append(params.messages[0].content.text if params.messages else "")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the python client"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(context, params):
        elicited.append(params.message)
        return types.ElicitResult(action="decline")

    async def on_log(params):
        logs.append(params.level)

    http = httpx2.AsyncClient(timeout=60)
    client = Client(
        streamable_http_client(url, http_client=http),
        mode="legacy",
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
        logging_callback=on_log,
    )
    async with http, client:
        tools = await all_pages(client.list_tools, "tools")
        prompts = await all_pages(client.list_prompts, "prompts")
        resources = await all_pages(client.list_resources, "resources")
        templates = await all_pages(client.list_resource_templates, "resource_templates")

        echo = await client.call_tool("ev_echo", {"message": "through the gateway"})
        total = await client.call_tool("ev_get-sum", {"a": 2, "b": 40})

        progress = []

        async def on_progress(value, total_steps, message):
            progress.append(value)

        long_run = await client.call_tool(
            "ev_trigger-long-running-operation",
            {"duration": 1, "steps": 3},
            progress_callback=on_progress,
        )

        first_uri = str(resources[0].uri)
        read = await client.read_resource(first_uri, cache_mode="bypass")
        templated = await client.read_resource("demo://resource/dynamic/text/7", cache_mode="bypass")

        prompt = await client.get_prompt("ev_simple-prompt", {})
        completion = await client.complete(
            PromptReference(type="ref/prompt", name="ev_completable-prompt"),
            {"name": "department", "value": "Eng"},
        )

        sampling = await client.call_tool("ev_trigger-sampling-request", {"prompt": "hello from the test"})
        elicitation = await client.call_tool("ev_trigger-elicitation-request", {})

        return {
            "tools": [t.name for t in tools],
            "prompts": [p.name for p in prompts],
            "resources": [str(r.uri) for r in resources],
            "templates": [t.uri_template for t in templates],
            "echo": text_of(echo),
            "sum": text_of(total),
            "longRun": text_of(long_run),
            "progress": progress,
            "read": {"uri": first_uri, "contents": len(read.contents)},
            "templated": getattr(templated.contents[0], "text", None),
            "prompt": len(prompt.messages),
            "completion": completion.completion.values,
            "sampling": {"requests": sampled, "result": text_of(sampling)},
            "elicitation": {"requests": elicited, "result": text_of(elicitation), "isError": elicitation.is_error},
            "logs": logs,
        }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: native_everything.py <MCP URL>")
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
