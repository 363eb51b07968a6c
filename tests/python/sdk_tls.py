"""The official Python MCP SDK over TLS: connects to the gateway's HTTPS listener, trusting
only the test CA, lists the tools and calls one. Prints one JSON object for
tests/it/prod_tls.rs.

Usage: python sdk_tls.py <MCP URL (https)> <CA file> <tool to call> [h1|h2]

With `h2` the SDK's HTTP client offers HTTP/2 by ALPN (it needs the `h2` package); the HTTP
versions of every response are reported, so the test sees which one was spoken.
"""

import asyncio
import json
import ssl
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, ca_file: str, tool: str, http2: bool) -> dict:
    context = ssl.create_default_context(cafile=ca_file)
    versions: set[str] = set()

    async def seen(response) -> None:
        versions.add(response.http_version)

    http = httpx2.AsyncClient(
        timeout=30, verify=context, http2=http2, event_hooks={"response": [seen]}
    )
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        page = await client.list_tools(cache_mode="bypass")
        result = await client.call_tool(tool, {"message": "python over tls"})
        text = "".join(getattr(block, "text", "") for block in result.content)
        return {
            "protocolVersion": client.protocol_version,
            "tools": [t.name for t in page.tools],
            "isError": bool(result.is_error),
            "text": text,
            "httpVersions": sorted(versions),
        }


if __name__ == "__main__":
    h2 = len(sys.argv) > 4 and sys.argv[4] == "h2"
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], h2))))
