"""Calls one tool THROUGH the gateway with the official Python MCP SDK client (`mcp` 2.3.0),
as the user of a bearer token. Used by tests/it/vault_native.rs.

Usage: python vault_client.py <MCP URL> <token> <tool> plain
       python vault_client.py <MCP URL> <token> <tool> elicit <handshake dir>

`plain`: a client without an elicitation callback (it declares no URL-mode elicitation) calls
the tool once. `elicit`: a client with an elicitation callback (form and URL modes declared)
calls the tool; when the gateway answers with the URL-elicitation-required error (-32042), each
URL elicitation of the error goes to the callback, which writes it to
<handshake dir>/elicitation.json (standing in for opening the URL in the user's browser) and
waits until <handshake dir>/linked exists; then the client calls the tool again.

Prints one JSON object: {"first": <outcome>, "elicitations": [...], "retry": <outcome>}, an
outcome being {"isError", "text"} or {"error": {"code", "message"}}.
"""

import asyncio
import json
import os
import sys
import time

import httpx2
import mcp_types as types
from mcp import Client, MCPError, UrlElicitationRequiredError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import URL_ELICITATION_REQUIRED

HANDSHAKE_TIMEOUT = 90


def outcome(result) -> dict:
    return {"isError": bool(result.is_error), "text": "".join(getattr(b, "text", "") for b in result.content)}


async def main(url: str, token: str, tool: str, mode: str, handshake: str | None) -> dict:
    elicitations: list[dict] = []

    async def on_elicitation(context, params):
        # The application's URL elicitation: hand the URL to the user (here: the test), wait
        # until they say they are done.
        if getattr(params, "mode", None) == "url":
            elicitations.append({"url": params.url, "elicitationId": params.elicitation_id, "message": params.message})
            with open(os.path.join(handshake, "elicitation.json"), "w") as f:
                json.dump(elicitations[-1], f)
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT
            while not os.path.exists(os.path.join(handshake, "linked")):
                if time.monotonic() > deadline:
                    return types.ElicitResult(action="cancel")
                await asyncio.sleep(0.1)
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="decline")

    http = httpx2.AsyncClient(timeout=60, headers={"authorization": f"Bearer {token}"})
    kwargs = {"elicitation_callback": on_elicitation} if mode == "elicit" else {}
    client = Client(streamable_http_client(url, http_client=http), mode="legacy", **kwargs)
    report: dict = {"elicitations": elicitations}
    async with http, client:
        try:
            report["first"] = outcome(await client.call_tool(tool, {}))
        except MCPError as e:
            report["first"] = {"error": {"code": e.error.code, "message": e.error.message}}
            if mode == "elicit" and e.error.code == URL_ELICITATION_REQUIRED:
                required = UrlElicitationRequiredError.from_error(e.error)
                for params in required.elicitations:
                    answer = await on_elicitation(None, params)
                    report.setdefault("answers", []).append(answer.action)
                try:
                    report["retry"] = outcome(await client.call_tool(tool, {}))
                except MCPError as e2:
                    report["retry"] = {"error": {"code": e2.error.code, "message": e2.error.message}}
    return report


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit("usage: vault_client.py <MCP URL> <token> <tool> plain|elicit [handshake dir]")
    handshake_dir = sys.argv[5] if len(sys.argv) > 5 else None
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], handshake_dir))))
