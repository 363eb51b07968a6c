"""An OAuth-protected MCP server on the official Python SDK (`mcp` 2.3.0, `MCPServer` with a
`TokenVerifier`), put behind the gateway as a `kind: mcp` backend by tests/it/vault_native.rs.

Usage: python vault_upstream.py <port> <audience> <issuer>=<jwks URL> [<issuer>=<jwks URL> ...]

It serves streamable HTTP at http://127.0.0.1:<port>/mcp and accepts a bearer token only when
it is a JWT signed by one of the trusted issuers (keys from that issuer's JWKS), unexpired,
and issued for <audience> (`aud`); every other request gets the SDK's 401 with its RFC 9728
protected-resource metadata. Its tools tell the caller which token the server saw:
  seen       the subject, issuer, audience, client and scopes of the token of this call, and
             the token itself
  presented  every bearer token presented to this server so far (accepted or not), so a test
             can check that a token never reached it

With UPSTREAM_INTROSPECT=<URL> in the environment it also asks that RFC 7662 endpoint of the
issuer (client `gateway`, the test authorization server's introspection client) whether each
token is still active, so a token the provider revoked is refused with a 401 like any other.
"""

import asyncio
import base64
import json
import os
import sys
import urllib.parse
import urllib.request

import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

presented: list[str] = []


class JwksVerifier:
    """Checks signature (the issuer's JWKS), expiry, issuer and audience."""

    def __init__(self, audience: str, trusted: dict[str, str]):
        self.audience = audience
        self.clients = {iss: jwt.PyJWKClient(url, cache_keys=True, lifespan=5) for iss, url in trusted.items()}

    def _verify(self, token: str) -> AccessToken | None:
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer = unverified.get("iss")
        client = self.clients.get(issuer)
        if client is None:
            return None
        header = jwt.get_unverified_header(token)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            audience=self.audience,
            issuer=issuer,
            options={"require": ["exp", "sub"]},
        )
        introspect = os.environ.get("UPSTREAM_INTROSPECT")
        if introspect and not self._active(introspect, token):
            raise ValueError("the issuer says the token is no longer active")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or issuer),
            scopes=str(claims.get("scope") or "").split(),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims=claims,
        )

    @staticmethod
    def _active(url: str, token: str) -> bool:
        basic = base64.b64encode(b"gateway:gateway-secret").decode()
        req = urllib.request.Request(
            url,
            data=urllib.parse.urlencode({"token": token}).encode(),
            headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bool(json.load(resp).get("active"))

    async def verify_token(self, token: str) -> AccessToken | None:
        presented.append(token)
        try:
            return await asyncio.to_thread(self._verify, token)
        except Exception as e:  # any refusal is a 401
            print(f"refused a token: {e}", file=sys.stderr, flush=True)
            return None


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: vault_upstream.py <port> <audience> <issuer>=<jwks URL> ...")
    port, audience = int(sys.argv[1]), sys.argv[2]
    trusted = dict(arg.split("=", 1) for arg in sys.argv[3:])
    first_issuer = next(iter(trusted))
    server = MCPServer(
        "vault-upstream",
        version="1.0.0",
        token_verifier=JwksVerifier(audience, trusted),
        auth=AuthSettings(
            issuer_url=first_issuer,
            resource_server_url=audience,
            validate_token_resource=False,
        ),
    )

    @server.tool(description="Which token this call carried.")
    def seen() -> str:
        t = get_access_token()
        if t is None:
            return json.dumps({"token": None})
        c = t.claims or {}
        return json.dumps(
            {
                "sub": t.subject,
                "iss": c.get("iss"),
                "aud": c.get("aud"),
                "client_id": t.client_id,
                "scope": " ".join(t.scopes),
                "token": t.token,
            }
        )

    @server.tool(description="Every bearer token presented to this server so far.")
    def presented_tokens() -> str:
        return json.dumps(presented)

    server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
