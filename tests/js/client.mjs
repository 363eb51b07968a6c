// Drives the gateway with the official TypeScript MCP SDK (@modelcontextprotocol/sdk 1.x, installed
// by scripts/toolbox.sh outside the clone).
//
// Usage: node client.mjs <MCP URL>
//   CORTEX_TS_SDK_DIR  the SDK package folder (…/node_modules/@modelcontextprotocol/sdk); required
//   MCP_HEADERS        optional JSON object of extra request headers (e.g. {"X-Dev-Mode":"…"})
//
// Connects over Streamable HTTP, lists every tool (following nextCursor), calls echo and
// test_simple_text, and prints one JSON object on stdout for tests/it/interop_clients.rs to assert
// on. Any failure exits non-zero with the error on stderr.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [url] = process.argv.slice(2);
const sdkDir = process.env.CORTEX_TS_SDK_DIR;
if (!url || !sdkDir) {
  console.error('usage: CORTEX_TS_SDK_DIR=<sdk package dir> node client.mjs <MCP URL>');
  process.exit(2);
}
const load = (rel) => import(pathToFileURL(join(sdkDir, 'dist/esm', rel)).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const headers = process.env.MCP_HEADERS ? JSON.parse(process.env.MCP_HEADERS) : {};

const client = new Client({ name: 'cortex-interop-ts', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
await client.connect(transport);

const tools = [];
let pages = 0;
let cursor;
do {
  const page = await client.listTools(cursor === undefined ? {} : { cursor });
  pages += 1;
  tools.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor !== undefined && pages < 100);

const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello from the ts sdk' } });
const simple = await client.callTool({ name: 'test_simple_text', arguments: {} });
const out = {
  protocolVersion: transport.protocolVersion ?? null,
  sessionId: transport.sessionId ?? null,
  serverName: client.getServerVersion()?.name ?? null,
  pages,
  tools,
  echo: { isError: echo.isError ?? false, structured: echo.structuredContent ?? null, content: echo.content },
  simple: { isError: simple.isError ?? false, content: simple.content },
};
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
