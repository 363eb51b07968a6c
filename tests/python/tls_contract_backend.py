"""A contract backend over HTTPS that requires a client certificate (mTLS), for the outbound
TLS test (tests/it/prod_tls.rs). Standard library only.

Usage: tls_contract_backend.py CERT KEY CLIENT_CA
Prints its port on stdout, then serves until killed. Tools: get_help, whoami_cert (answers
the common name of the client certificate the gateway showed).
"""

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, CLIENT_CA = sys.argv[1:4]

TOOLS = [
    {"name": "get_help", "scope": "mcp:m:read", "description": "How this backend works."},
    {"name": "whoami_cert", "scope": "mcp:m:read", "description": "The client certificate's CN."},
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
        if method == "list_tools":
            return self.reply(200, {"tools": TOOLS})
        if method == "get_help":
            return self.reply(200, {"help": "mTLS test backend"})
        if method == "whoami_cert":
            peer = self.connection.getpeercert() or {}
            names = [value for rdn in peer.get("subject", ()) for (key, value) in rdn if key == "commonName"]
            return self.reply(200, {"client_cn": names[0] if names else None})
        return self.reply(400, {"error": f"Unknown method: {method}"})

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    ctx.load_verify_locations(CLIENT_CA)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
