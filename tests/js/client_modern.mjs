// Drives the gateway with the TypeScript v2 client (@modelcontextprotocol/client 2.x, installed
// with the MCP Inspector by scripts/toolbox.sh outside the clone) in its dual-era mode: it probes
// server/discover and, when the server answers it, speaks the stateless 2026-07-28 era.
//
// Usage: node client_modern.mjs <MCP URL>
//   CORTEX_TS_CLIENT_DIR  the package folder (…/node_modules/@modelcontextprotocol/client); required
//   MCP_HEADERS           optional JSON object of extra request headers (e.g. {"Authorization":"…"})
//
// Lists every tool (following nextCursor), calls echo and test_simple_text, reads a resource,
// gets a prompt, and prints one JSON object on stdout for tests/it/interop_clients.rs to assert
// on. Any failure exits non-zero with the error on stderr.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [url] = process.argv.slice(2);
const dir = process.env.CORTEX_TS_CLIENT_DIR;
if (!url || !dir) {
  console.error('usage: CORTEX_TS_CLIENT_DIR=<client package dir> node client_modern.mjs <MCP URL>');
  process.exit(2);
}
const { Client, StreamableHTTPClientTransport } = await import(
  pathToFileURL(join(dir, 'dist/index.mjs')).href
);
const headers = process.env.MCP_HEADERS ? JSON.parse(process.env.MCP_HEADERS) : {};

const client = new Client(
  { name: 'cortex-interop-ts-modern', version: '1.0.0' },
  { versionNegotiation: { mode: 'auto' } },
);
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

const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello from the ts v2 client' } });
const simple = await client.callTool({ name: 'test_simple_text', arguments: {} });
const text = await client.readResource({ uri: 'test://static-text' });
const prompt = await client.getPrompt({
  name: 'test_prompt_with_arguments',
  arguments: { arg1: 'a', arg2: 'b' },
});
const out = {
  protocolVersion: client.getNegotiatedProtocolVersion(),
  sessionId: transport.sessionId ?? null,
  tools,
  pages,
  echo,
  simple,
  text,
  prompt,
};
await client.close();
console.log(JSON.stringify(out));
