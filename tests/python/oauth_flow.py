"""The official Python MCP SDK's own OAuth client (`mcp` 2.3.0 `OAuthClientProvider`) against
the gateway in `auth.mode: oauth`, fronted by oidc-provider (tests/oidc/as.mjs).

Usage: python oauth_flow.py <MCP URL> <login> <tool> [<tool arguments as JSON>]

What happens, all driven by the SDK: the first POST gets a 401 whose WWW-Authenticate names
the protected-resource metadata; the SDK fetches it, discovers the authorization server,
registers itself (dynamic client registration), and runs the authorization-code flow with
PKCE S256 and `resource`. This script plays the user in a browser: it follows the
authorization URL, signs in at oidc-provider's development login as <login> and consents,
then hands the redirect's code back to the SDK. The SDK exchanges it and retries with the
token; the script then lists the tools and calls <tool>.

Prints one JSON object on stdout; any failure is a non-zero exit with the traceback.
"""

import asyncio
import json
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class MemoryStorage:
    """Token storage for one run."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class Browser:
    """Follows the authorization URL like a user would, with oidc-provider's dev login."""

    def __init__(self, login: str):
        self.login = login
        self.result = None
        self.seen = []

    async def authorize(self, authorization_url: str) -> None:
        self.seen.append(authorization_url)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
            url = authorization_url
            for _ in range(30):
                resp = await http.get(url)
                if resp.status_code in (302, 303):
                    url = urljoin(url, resp.headers["location"])
                    if url.startswith(REDIRECT_URI):
                        self.result = parse_redirect(url)
                        return
                    continue
                if resp.status_code != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status_code}: {resp.text[:500]}")
                action = re.search(r'action="([^"]+)"', resp.text)
                prompt = re.search(r'name="prompt" value="([a-z]+)"', resp.text)
                if not action or not prompt:
                    raise RuntimeError(f"no interaction form at {url}: {resp.text[:500]}")
                form = {"prompt": prompt.group(1)}
                if form["prompt"] == "login":
                    form.update({"login": self.login, "password": "any"})
                post = await http.post(urljoin(url, action.group(1)), data=form)
                if post.status_code not in (302, 303):
                    raise RuntimeError(f"interaction {form['prompt']}: HTTP {post.status_code}: {post.text[:500]}")
                url = urljoin(url, post.headers["location"])
                if url.startswith(REDIRECT_URI):
                    self.result = parse_redirect(url)
                    return
            raise RuntimeError("the authorization flow did not reach the redirect URI")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("no authorization code was received")
        return self.result


def parse_redirect(url: str) -> AuthorizationCodeResult:
    q = parse_qs(urlparse(url).query)
    if "error" in q:
        raise RuntimeError(f"authorization failed: {q}")
    return AuthorizationCodeResult(
        code=q["code"][0],
        state=q.get("state", [None])[0],
        iss=q.get("iss", [None])[0],
    )


async def main(url: str, login: str, tool: str, arguments: dict) -> dict:
    browser = Browser(login)
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="cortex-gateway oauth test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.authorize,
        callback_handler=browser.callback,
    )
    http = httpx2.AsyncClient(auth=provider, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        names = []
        cursor = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            names.extend(t.name for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        called = await client.call_tool(tool, arguments)
        authorization = urlparse(browser.seen[0]) if browser.seen else None
        query = parse_qs(authorization.query) if authorization else {}
        return {
            "protocolVersion": client.protocol_version,
            "tools": names,
            "call": {
                "isError": called.is_error,
                "structured": called.structured_content,
            },
            "authorization": {
                "resource": query.get("resource", [None])[0],
                "scope": query.get("scope", [None])[0],
                "code_challenge_method": query.get("code_challenge_method", [None])[0],
                "client_id": query.get("client_id", [None])[0],
            },
            "token_scope": storage.tokens.scope if storage.tokens else None,
            "registered": storage.client_info is not None,
        }


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: oauth_flow.py <MCP URL> <login> <tool> [<arguments JSON>]")
    args = json.loads(sys.argv[4]) if len(sys.argv) == 5 else {}
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], args))))
