"""A stdio MCP server that misbehaves on purpose, for the gateway's fault tests
(tests/it/fault_native.rs). Newline-delimited JSON-RPC on stdin/stdout, no dependencies.

Tools:
  ok      answers with this process's pid
  exit    exits (status 3) in the middle of the call
  hang    never answers
  flood   writes `bytes` bytes to stderr (one line, or lines of 100 bytes when `lines` is
          true), then answers
"""
import json
import os
import sys

TOOLS = ["ok", "exit", "hang", "flood"]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(id_, value):
    send({"jsonrpc": "2.0", "id": id_, "result": value})


def text(id_, t):
    result(id_, {"content": [{"type": "text", "text": t}]})


def flood(size, lines):
    block = (b"x" * 99 + b"\n") if lines else b"y" * 65536
    err = sys.stderr.buffer
    written = 0
    while written < size:
        err.write(block)
        written += len(block)
    if not lines:
        err.write(b"\n")
    err.flush()


for raw in sys.stdin:
    raw = raw.strip()
    if not raw:
        continue
    try:
        msg = json.loads(raw)
    except ValueError:
        continue
    method = msg.get("method")
    id_ = msg.get("id")
    if id_ is None or method is None:
        continue
    if method == "initialize":
        result(id_, {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fault-stdio", "version": "0"},
        })
    elif method == "tools/list":
        result(id_, {"tools": [
            {"name": n, "description": n, "inputSchema": {"type": "object"}} for n in TOOLS
        ]})
    elif method == "tools/call":
        name = msg["params"]["name"]
        args = msg["params"].get("arguments") or {}
        if name == "ok":
            text(id_, str(os.getpid()))
        elif name == "exit":
            os._exit(3)
        elif name == "hang":
            pass
        elif name == "flood":
            flood(int(args.get("bytes", 0)), bool(args.get("lines", False)))
            text(id_, "flooded")
    elif method == "ping":
        result(id_, {})
    else:
        send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "Method not found"}})
