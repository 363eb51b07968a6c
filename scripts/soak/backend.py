"""The contract backend of the soak run (scripts/soak.sh): standard library only.

Usage: backend.py PORT
Serves the Cortex backend contract on 127.0.0.1:PORT (HTTP/1.1 keep-alive, one thread per
connection) until killed. Tools: `echo` (returns its params) and `sum` (adds `a` and `b`).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = [
    {"name": "echo", "description": "Returns its params.", "params": {"text": "string"}},
    {"name": "sum", "description": "Adds a and b.", "params": {"a": "number", "b": "number"}},
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = min(int(self.headers.get("content-length") or 0), 1 << 20)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.reply(400, {"error": "not JSON"})
        method = body.get("method")
        params = body.get("params") or {}
        if method == "list_tools":
            return self.reply(200, {"tools": TOOLS})
        if method == "echo":
            return self.reply(200, {"echo": params})
        if method == "sum":
            return self.reply(200, {"sum": (params.get("a") or 0) + (params.get("b") or 0)})
        return self.reply(400, {"error": f"Unknown method: {method}"})

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
