"""Calls tools that need the user mid-call through the gateway with the official Python MCP SDK
(`mcp` 2.3.0), in the connect mode given on the command line, with callbacks that answer
elicitation, sampling and roots requests.

Usage: python sdk_input.py <MCP URL> <auto|legacy> <tool prefix>

In `auto` mode the client speaks 2026-07-28: the gateway answers a call whose upstream asks
something with an InputRequiredResult, and the SDK runs the callbacks and retries with
inputResponses. In `legacy` mode the client speaks 2025-11-25 and the requests arrive on the
call's event stream. The calls (tools of tests/python/native_fixture.py behind the gateway,
named with `<tool prefix>`):

  test_elicitation            one elicitation
  test_sampling               one sampling request
  ask_roots                   one roots request
  test_tool_with_logging      three log messages (relayed with log_level "info" in auto mode)
  test_tool_with_progress     three progress notifications

Prints one JSON object on stdout; any failure exits non-zero with the traceback on stderr.
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

asked: list[str] = []
logs: list[str] = []
progress: list[float] = []


async def on_elicit(context, params):
    asked.append("elicitation")
    return types.ElicitResult(action="accept", content={"username": "alice", "email": "alice@example.com"})


async def on_sample(context, params):
    asked.append("sampling")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the client"),
        model="test-model",
        stop_reason="endTurn",
    )


async def on_roots(context):
    asked.append("roots")
    return types.ListRootsResult(roots=[types.Root(uri="file:///client/root", name="root")])


async def on_log(params):
    logs.append(str(params.data))


async def on_progress(value, total, message):
    progress.append(value)


def text(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def main(url: str, mode: str, prefix: str) -> dict:
    http = httpx2.AsyncClient(timeout=60)
    client = Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        list_roots_callback=on_roots,
        logging_callback=on_log,
        log_level="info",
    )
    async with http, client:
        elicited = await client.call_tool(f"{prefix}test_elicitation", {"message": "Who are you?"})
        sampled = await client.call_tool(f"{prefix}test_sampling", {"prompt": "Say hi"})
        roots = await client.call_tool(f"{prefix}ask_roots", {})
        logged = await client.call_tool(f"{prefix}test_tool_with_logging", {})
        progressed = await client.call_tool(
            f"{prefix}test_tool_with_progress", {}, progress_callback=on_progress
        )
        return {
            "mode": mode,
            "protocolVersion": client.protocol_version,
            "elicited": text(elicited),
            "sampled": text(sampled),
            "roots": text(roots),
            "logged": text(logged),
            "progressed": text(progressed),
            "asked": asked,
            "logs": logs,
            "progress": progress,
        }


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in ("legacy", "auto"):
        sys.exit("usage: sdk_input.py <MCP URL> <auto|legacy> <tool prefix>")
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))))
