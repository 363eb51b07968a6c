#!/usr/bin/env python3
"""The host side of scripts/docker-smoke.sh, standard library only.

  backend --port-file F --token T   a contract backend on 127.0.0.1 (a free port, written to F)
                                    with one tool, `echo`; runs until stopped
  mcp --url URL --text TEXT         an MCP client: initialize, tools/list, tools/call of the
                                    backend's echo tool through the gateway; exit 0 when the
                                    reply carries TEXT, 1 with the reason otherwise

Every network wait is bounded (urllib timeouts); nothing listens off loopback.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTRACT_PATH = "/api/cortex/backend"
CATALOG_METHODS = {"list_tools", "list_prompts", "list_resource_templates", "list_resources"}
ECHO_TOOL = {
    "name": "echo",
    "scope": "mcp:smoke:read",
    "version": "1.0.0",
    "description": "Returns the text it was given, with the caller's user id.",
    "params": {"text": "string"},
}
TIMEOUT = 10  # seconds, per HTTP exchange
MAX_BODY = 1 << 20


def serve_backend(port_file, technical_token):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.reply(413, {"error": "Body too large"})
            raw = self.rfile.read(length)
            if self.path != CONTRACT_PATH:
                return self.reply(404, {"error": "Not found"})
            auth = self.headers.get("Authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not token:
                return self.reply(401, {"error": "Missing bearer token"})
            try:
                request = json.loads(raw)
                method, params = request["method"], request.get("params") or {}
            except (ValueError, KeyError, TypeError):
                return self.reply(400, {"error": 'Body must be {"method": "...", "params": {...}}'})
            if token == technical_token and method not in CATALOG_METHODS:
                return self.reply(403, {"error": "The technical token may only list the catalog"})
            if method == "list_tools":
                return self.reply(200, {"tools": [ECHO_TOOL]})
            if method == "echo":
                text = params.get("text")
                if not isinstance(text, str):
                    return self.reply(400, {"error": "text must be a string"})
                user = self.headers.get("X-Cortex-User-Id", "")
                return self.reply(200, {"echo": text, "user": user})
            return self.reply(400, {"error": f"Unknown method: {method}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file, "w", encoding="utf-8") as out:
        out.write(f"{server.server_address[1]}\n")
    server.serve_forever()


class Mcp:
    """A minimal MCP Streamable HTTP client (JSON or SSE replies)."""

    def __init__(self, url):
        self.url = url
        self.session = None
        self.next_id = 0

    def post(self, message):
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        request = urllib.request.Request(
            self.url, data=json.dumps(message).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            session = reply.headers.get("Mcp-Session-Id")
            if session:
                self.session = session
            kind = reply.headers.get("Content-Type", "")
            body = reply.read(MAX_BODY).decode()
        if "id" not in message:
            return None
        if kind.startswith("text/event-stream"):
            for line in body.splitlines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("id") == message["id"]:
                        return event
            raise RuntimeError(f"no reply to request {message['id']} in the event stream")
        return json.loads(body)

    def request(self, method, params):
        self.next_id += 1
        reply = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def notify(self, method):
        self.post({"jsonrpc": "2.0", "method": method})


def run_mcp(url, text):
    client = Mcp(url)
    init = client.request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "docker-smoke", "version": "1"},
        },
    )
    print(f"mcp: initialize -> {init['serverInfo']['name']} {init['protocolVersion']}")
    client.notify("notifications/initialized")
    names = [tool["name"] for tool in client.request("tools/list", {})["tools"]]
    echo = next((name for name in names if name.endswith("echo")), None)
    if echo is None:
        raise RuntimeError(f"the backend's echo tool is not in the catalog: {names}")
    print(f"mcp: tools/list -> {echo} among {len(names)} tools")
    result = client.request("tools/call", {"name": echo, "arguments": {"text": text}})
    if result.get("isError"):
        raise RuntimeError(f"tools/call {echo} returned an error: {result}")
    if text not in json.dumps(result):
        raise RuntimeError(f"tools/call {echo} did not echo {text!r}: {result}")
    print(f"mcp: tools/call {echo} -> {json.dumps(result.get('structuredContent', result))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    backend = commands.add_parser("backend")
    backend.add_argument("--port-file", required=True)
    backend.add_argument("--token", required=True)
    mcp = commands.add_parser("mcp")
    mcp.add_argument("--url", required=True)
    mcp.add_argument("--text", required=True)
    args = parser.parse_args()
    if args.command == "backend":
        serve_backend(args.port_file, args.token)
        return 0
    try:
        run_mcp(args.url, args.text)
    except (OSError, RuntimeError, ValueError, KeyError, urllib.error.URLError) as problem:
        print(f"mcp: FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
