"""A 2026-07-28 MCP server on the official Python SDK (`mcp` 2.3.0, `MCPServer`) over
streamable HTTP, put behind the gateway as a `kind: mcp` backend with `protocol: 2026-07-28`
by tests/it/modern_upstream.rs.

Usage: python modern_upstream.py <port> [sdk]

Its tools ask for input the 2026-07-28 way: they answer `tools/call` with an
`InputRequiredResult` (`inputRequests` plus a `requestState` of their own) and finish when the
client retries with `inputResponses` and that state:
  greet           asks one form elicitation (name), then greets; its state must come back
  survey          asks three things in one round (elicitation, sampling, roots)
  two_rounds      asks one question per round, for two rounds (the second state carries the
                  first answer)
  plain           answers at once
  regional        answers with its `region`, annotated `x-mcp-header: Region`
  seen_requests   what the server saw of every request so far: method, the Mcp-Method,
                  Mcp-Name and Mcp-Param-* headers, the session header, the `_meta` protocol version and
                  client capabilities (so tests can check what the gateway sends)
and a prompt `hello` and a resource `test://modern/info`.

It also serves what the conformance suite's 2026-07-28 scenarios ask of a server that only a
2026-07-28 upstream can give through the gateway (tests/it/modern_conformance.rs, `naming:
none`): input requests under keys of its own, several in one result, answers on a first call,
input required on `prompts/get`, and the diagnostic tools of `server-stateless`:
  test_input_required_result_elicitation    asks `user_name`; answers "Hello, <name>!"
  test_input_required_result_multiple_inputs asks `user_name`, `greeting`, `client_roots` at once
  prompt test_input_required_result_prompt  asks `user_context`
  test_missing_capability                   asks for sampling whatever the client declared
  test_streaming_elicitation                asks for a form
  test_logging_tool                         logs, then answers

With `sdk`, it also serves the tools tests/python/sdk_input.py calls (test_elicitation,
test_sampling, ask_roots, test_tool_with_logging, test_tool_with_progress), the 2026-07-28 way
(they would collide with the native fixture's under `naming: none`, hence the flag).
"""

import json
import sys
from typing import Annotated

from pydantic import Field

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("modern-upstream", version="1.0.0", instructions="A 2026-07-28 test server.")

seen: list[dict] = []


def elicit(message: str, field: str) -> types.ElicitRequest:
    return types.ElicitRequest(
        method="elicitation/create",
        params=types.ElicitRequestFormParams(
            message=message,
            requested_schema={
                "type": "object",
                "properties": {field: {"type": "string"}},
                "required": [field],
            },
        ),
    )


def answer_of(ctx: Context, key: str):
    responses = ctx.input_responses or {}
    value = responses.get(key)
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


@server.tool(description="Asks for your name (one elicitation), then greets you.")
async def greet(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    answer = answer_of(ctx, "name")
    if answer is None:
        return types.InputRequiredResult(input_requests={"name": elicit("What is your name?", "name")}, request_state="greet-1")
    if ctx.request_state != "greet-1":
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"bad state {ctx.request_state!r}")], is_error=True)
    content = answer.get("content") or {}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Hello {content.get('name', '?')} ({answer.get('action')})")]
    )


@server.tool(description="Asks three things in one round: a form, an LLM sample and the roots.")
async def survey(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    e, s, r = answer_of(ctx, "color"), answer_of(ctx, "poem"), answer_of(ctx, "where")
    if e is None or s is None or r is None:
        return types.InputRequiredResult(
            input_requests={
                "color": elicit("Favourite colour?", "color"),
                "poem": types.CreateMessageRequest(
                    method="sampling/createMessage",
                    params=types.CreateMessageRequestParams(
                        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Write a poem"))],
                        max_tokens=50,
                    ),
                ),
                "where": types.ListRootsRequest(method="roots/list"),
            },
            request_state="survey-1",
        )
    color = (e.get("content") or {}).get("color")
    poem = (s.get("content") or {}).get("text")
    roots = [x.get("uri") for x in r.get("roots", [])]
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps({"color": color, "poem": poem, "roots": roots}))])


@server.tool(description="Asks one question per round, for two rounds.")
async def two_rounds(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    state = ctx.request_state
    if state is None:
        return types.InputRequiredResult(input_requests={"first": elicit("First?", "v")}, request_state="round-1")
    if state == "round-1":
        first = answer_of(ctx, "first") or {}
        v = (first.get("content") or {}).get("v", "")
        return types.InputRequiredResult(input_requests={"second": elicit("Second?", "v")}, request_state=f"round-2:{v}")
    if state.startswith("round-2:"):
        second = answer_of(ctx, "second") or {}
        v = (second.get("content") or {}).get("v", "")
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"{state[8:]}+{v}")])
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"bad state {state!r}")], is_error=True)


@server.tool(description="Answers at once.")
async def plain(word: str) -> str:
    return f"plain {word}"


@server.tool(description="Answers with its region, an argument clients mirror into Mcp-Param-Region.")
async def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
    return f"region {region}"


@server.tool(description="What the server saw of every request so far.")
async def seen_requests() -> str:
    return json.dumps(seen)


@server.prompt(description="Says hello.")
def hello(who: str) -> str:
    return f"Hello, {who}!"


@server.resource("test://modern/info", description="A fixed text.")
def info() -> str:
    return "modern info"


NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def sample(text: str) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        method="sampling/createMessage",
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))],
            max_tokens=50,
        ),
    )


def name_request() -> types.ElicitRequest:
    return types.ElicitRequest(
        method="elicitation/create",
        params=types.ElicitRequestFormParams(message="What is your name?", requested_schema=NAME_SCHEMA),
    )


@server.tool(name="test_input_required_result_elicitation", description="Asks the user's name.")
async def irr_elicitation(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    answer = answer_of(ctx, "user_name")
    if not isinstance(answer, dict) or answer.get("action") != "accept":
        return types.InputRequiredResult(input_requests={"user_name": name_request()})
    name = (answer.get("content") or {}).get("name", "?")
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"Hello, {name}!")])


@server.tool(name="test_input_required_result_multiple_inputs", description="Asks three things at once.")
async def irr_multiple(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    keys = ("user_name", "greeting", "client_roots")
    answers = {k: answer_of(ctx, k) for k in keys}
    if any(a is None for a in answers.values()):
        return types.InputRequiredResult(
            input_requests={
                "user_name": name_request(),
                "greeting": sample("Generate a greeting"),
                "client_roots": types.ListRootsRequest(method="roots/list"),
            },
            request_state="multi-1",
        )
    name = (answers["user_name"].get("content") or {}).get("name")
    greeting = (answers["greeting"].get("content") or {}).get("text")
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"{greeting} {name}")])


@server.prompt(name="test_input_required_result_prompt", description="A prompt that needs context first.")
async def irr_prompt(ctx: Context):
    answer = answer_of(ctx, "user_context")
    if answer is None:
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        return types.InputRequiredResult(
            input_requests={
                "user_context": types.ElicitRequest(
                    method="elicitation/create",
                    params=types.ElicitRequestFormParams(message="What context should the prompt use?", requested_schema=schema),
                )
            }
        )
    context = (answer.get("content") or {}).get("context", "")
    return f"Use this context: {context}"


@server.tool(description="Needs sampling, whatever the client declared.")
async def test_missing_capability(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if answer_of(ctx, "llm") is None:
        return types.InputRequiredResult(input_requests={"llm": sample("Say something")})
    return types.CallToolResult(content=[types.TextContent(type="text", text="sampled")])


@server.tool(description="Asks for a form.")
async def test_streaming_elicitation(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if answer_of(ctx, "user_name") is None:
        return types.InputRequiredResult(input_requests={"user_name": name_request()})
    return types.CallToolResult(content=[types.TextContent(type="text", text="thanks")])


@server.tool(description="Logs, then answers.")
async def test_logging_tool(ctx: Context) -> str:
    await ctx.info("a log message")
    return "logged"


def sdk_tools() -> None:
    """The tools of tests/python/sdk_input.py, asking with InputRequiredResults."""

    @server.tool(description="Asks the user (one form elicitation).")
    async def test_elicitation(message: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
        answer = answer_of(ctx, "who")
        if answer is None:
            schema = {"type": "object", "properties": {"username": {"type": "string"}, "email": {"type": "string"}}, "required": ["username", "email"]}
            request = types.ElicitRequest(method="elicitation/create", params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
            return types.InputRequiredResult(input_requests={"who": request})
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"User response: {json.dumps(answer)}")])

    @server.tool(description="Asks the client's LLM.")
    async def test_sampling(prompt: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
        answer = answer_of(ctx, "llm")
        if answer is None:
            return types.InputRequiredResult(input_requests={"llm": sample(prompt)})
        reply = (answer.get("content") or {}).get("text")
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"LLM response: {reply}")])

    @server.tool(description="Asks the client's roots.")
    async def ask_roots(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
        answer = answer_of(ctx, "roots")
        if answer is None:
            return types.InputRequiredResult(input_requests={"roots": types.ListRootsRequest(method="roots/list")})
        uris = " ".join(r.get("uri", "") for r in answer.get("roots", []))
        return types.CallToolResult(content=[types.TextContent(type="text", text=uris)])

    @server.tool(description="Sends three log messages while it runs.")
    async def test_tool_with_logging(ctx: Context) -> str:
        for line in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(line)
        return "Tool with logging executed successfully"

    @server.tool(description="Reports progress 0, 50 and 100 of 100.")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100)
        return "Tool with progress executed successfully"


def recording(app):
    """The app, with every POST's method, mirrored headers and `_meta` recorded."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode(): v.decode() for k, v in scope.get("headers") or []}
        try:
            msg = json.loads(body)
            meta = (msg.get("params") or {}).get("_meta") or {}
            seen.append(
                {
                    "method": msg.get("method"),
                    "mcpMethod": headers.get("mcp-method"),
                    "mcpName": headers.get("mcp-name"),
                    "session": headers.get("mcp-session-id"),
                    "version": headers.get("mcp-protocol-version"),
                    "metaVersion": meta.get("io.modelcontextprotocol/protocolVersion"),
                    "metaCaps": meta.get("io.modelcontextprotocol/clientCapabilities"),
                    "params": {k: v for k, v in headers.items() if k.startswith("mcp-param-")},
                }
            )
            del seen[:-200]
        except Exception:
            pass
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return wrapped


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "sdk"):
        sys.exit("usage: modern_upstream.py <port> [sdk]")
    if len(sys.argv) == 3:
        sdk_tools()
    import uvicorn

    uvicorn.run(recording(server.streamable_http_app()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
