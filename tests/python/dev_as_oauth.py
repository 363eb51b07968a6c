"""The official Python MCP SDK (`mcp` 2.3.0) signs in to `cortex-gateway demo --oauth` with real
OAuth, once as `reader` and once as `writer`, and reports what each sees.

Usage: python dev_as_oauth.py <MCP URL>

For each user, a fresh `OAuthClientProvider` (in-memory storage, no pre-registered client)
does what the SDK does against any MCP server: the 401 challenge, protected-resource metadata
discovery, authorization server metadata, dynamic client registration, PKCE S256 with `state`
and `resource`, and the RFC 9207 `iss` check. The "browser" is scripted: the redirect handler
GETs the authorization URL, and POSTs the sign-in page's form with the user's button. The
callback handler hands the SDK the `code`, `state` and `iss` from the 303's Location. Then the
script lists every tool and tries a write tool.

Prints one JSON object on stdout for tests/dev_as_e2e.rs. Any failure propagates as a non-zero
exit with the traceback on stderr.
"""

import asyncio
import json
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

# Nothing listens here: the scripted browser reads the redirect instead of following it.
REDIRECT_URI = "http://127.0.0.1:45999/callback"


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class ScriptedBrowser:
    """Plays the person at the sign-in page: picks `user` with one POST."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.result: AuthorizationCodeResult | None = None
        self.authorization_url: str | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_url = authorization_url
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as browser:
            page = await browser.get(authorization_url)
            if page.status_code != 200:
                raise RuntimeError(f"sign-in page: HTTP {page.status_code}: {page.text}")
            match = re.search(r'name="request" value="([^"]+)"', page.text)
            if not match:
                raise RuntimeError(f"no sign-in form on the page: {page.text}")
            action = urljoin(authorization_url, "/oauth/authorize")
            choice = await browser.post(action, data={"request": match.group(1), "user": self.user})
            if choice.status_code != 303:
                raise RuntimeError(f"picker POST: HTTP {choice.status_code}: {choice.text}")
            location = choice.headers["location"]
            if not location.startswith(REDIRECT_URI):
                raise RuntimeError(f"redirected to {location}, not to the client")
            query = parse_qs(urlparse(location).query)
            if "code" not in query:
                raise RuntimeError(f"no code in the redirect: {location}")
            self.result = AuthorizationCodeResult(
                code=query["code"][0],
                state=query.get("state", [None])[0],
                iss=query.get("iss", [None])[0],
            )

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("the redirect handler did not obtain a code")
        return self.result


def tool_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def sign_in_and_list(url: str, user: str) -> dict:
    storage = MemoryStorage()
    browser = ScriptedBrowser(user)
    requests: list[str] = []

    async def record(request: httpx2.Request) -> None:
        requests.append(f"{request.method} {request.url.path}")

    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name=f"python sdk as {user}",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    http = httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"request": [record]})
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        names = []
        cursor = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            names.extend(tool.name for tool in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        echo = await client.call_tool("demo_echo", {"message": f"hello from {user}"})
        try:
            saved = await client.call_tool("demo_save_note", {"text": f"written by {user}"})
            save = {"isError": saved.is_error, "structured": saved.structured_content}
        except Exception as exc:  # the reader: the tool is hidden, so it is an unknown tool
            save = {"exception": tool_error(exc)}
    auth_params = parse_qs(urlparse(browser.authorization_url or "").query)
    return {
        "user": user,
        "tools": names,
        "echo": {"isError": echo.is_error, "structured": echo.structured_content},
        "save": save,
        "granted_scope": storage.tokens.scope if storage.tokens else None,
        "has_refresh_token": bool(storage.tokens and storage.tokens.refresh_token),
        "client_id": storage.client_info.client_id if storage.client_info else None,
        "authorize": {k: v[0] for k, v in auth_params.items() if k != "code_challenge"},
        "requests": requests,
    }


async def main(url: str) -> dict:
    return {
        "reader": await sign_in_and_list(url, "reader"),
        "writer": await sign_in_and_list(url, "writer"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: dev_as_oauth.py <MCP URL>")
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
