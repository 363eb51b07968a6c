// A real OAuth 2.1 / OpenID authorization server for the gateway's OAuth tests:
// oidc-provider 9.13.3 (installed by scripts/toolbox.sh under $CORTEX_TOOLBOX_DIR/node) on
// 127.0.0.1 only, configured from the environment:
//
//   AS_PORT             port to listen on (required; the issuer is http://127.0.0.1:<port>)
//   MCP_RESOURCES       comma-separated resource indicators it issues tokens for; the first is
//                       the default (the gateway's canonical URI), the others are there to mint
//                       tokens for a different audience
//   AS_SCOPES           space-separated scopes it knows (default "mcp:tools mcp:admin")
//   OIDC_NODE_MODULES   the node_modules folder holding oidc-provider and jose
//   CIMD                "1": OAuth Client ID Metadata Documents on (an https client_id is
//                       fetched and used as the client's metadata; the metadata then says
//                       client_id_metadata_document_supported). The test gateway is on
//                       loopback, so the fetch goes without oidc-provider's guard against
//                       special-use addresses; set NODE_EXTRA_CA_CERTS to the test CA so the
//                       gateway's certificate is trusted
//
// Signing keys are generated at every start, with kids that differ between starts: killing and
// restarting this script on the same port is how the tests rotate the issuer's keys.
//
// Pre-registered clients (secrets are test values):
//   m2m / m2m-secret              client_credentials, every scope, pool claim "pool-a"
//   m2m-other-pool / other-secret client_credentials, every scope, pool claim "pool-b"
//   m2m-short / short-secret      client_credentials, tokens that live 2 seconds
//   m2m-ps256, m2m-es256, m2m-es384, m2m-eddsa (secret "<id>-secret")
//                                 client_credentials whose tokens use that algorithm
//   gateway / gateway-secret      the gateway's own client: token exchange (RFC 8693) and
//                                 introspection
//   public-native                 authorization_code + PKCE, redirect http://127.0.0.1:33418/callback
//   EXTRA_CLIENTS (env)           more clients, a JSON array of client metadata
// Dynamic client registration (/reg) is open, PKCE S256 is required, dev interactions (login
// with any user name, then consent) are on.
//
// Test-only endpoints under /test/ (loopback test server only, never a real AS feature):
//   POST /test/sign        {"claims":{…},"alg":"RS256","kid":"…","foreign":false,"typ":"at+jwt","header":{…}}
//                          → {"token"}: claims signed with this server's current key for alg
//                          (or with a key it never published when foreign is true)
//   POST /test/introspect  RFC 7662 for the JWT access tokens it issues (oidc-provider's own
//                          introspection refuses structured tokens); Basic auth gateway:gateway-secret
//   POST /test/revoke      {"jti"} → later introspections of that token answer active:false
//   POST /test/introspection-mode {"mode":"ok"|"error"} → "error" makes /test/introspect 500
//   GET  /test/stats       {"introspections": n, "exchanges": n, "cimd_fetches": [URL, …],
//                          "defaulted_resource": {route: n}} (requests that named no resource)
// Token exchange (grant_type urn:ietf:params:oauth:grant-type:token-exchange) is registered on
// /token for the `gateway` client: the subject_token must be a valid access token of this
// server; the result is a JWT for `audience`/`resource` with the subject's sub and scopes (capped
// by `scope` when given) and act.sub = the gateway's client id.
//
// On start it prints one line `issuer http://127.0.0.1:<port>` on stdout.

import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const NM = process.env.OIDC_NODE_MODULES;
if (!NM) {
  console.error('OIDC_NODE_MODULES is not set: run scripts/toolbox.sh and point it at $CORTEX_TOOLBOX_DIR/node/node_modules');
  process.exit(2);
}
const { default: Provider, errors } = await import(pathToFileURL(join(NM, 'oidc-provider/lib/index.js')).href);
const jose = await import(pathToFileURL(join(NM, 'jose/dist/webapi/index.js')).href);

const PORT = Number(process.env.AS_PORT);
if (!PORT) {
  console.error('AS_PORT is required');
  process.exit(2);
}
const ISSUER = `http://127.0.0.1:${PORT}`;
const RESOURCES = (process.env.MCP_RESOURCES || 'http://127.0.0.1:8080/mcp').split(',').map((s) => s.trim()).filter(Boolean);
const SCOPES = (process.env.AS_SCOPES || 'mcp:tools mcp:admin').split(/\s+/).filter(Boolean);
const GEN = randomBytes(4).toString('hex');

// One key per algorithm family; kids change at every start.
function makeKey(kind, options, alg) {
  const { privateKey } = generateKeyPairSync(kind, options);
  const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', kid: `${alg.toLowerCase()}-${GEN}` };
  return { privateKey, jwk, alg };
}
const KEYS = {
  RS256: makeKey('rsa', { modulusLength: 2048 }, 'RS256'),
  ES256: makeKey('ec', { namedCurve: 'P-256' }, 'ES256'),
  ES384: makeKey('ec', { namedCurve: 'P-384' }, 'ES384'),
  EdDSA: makeKey('ed25519', {}, 'EdDSA'),
};
// PS* use the RSA key (an RSA JWK without "alg" may sign with either padding).
function keyFor(alg) {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return KEYS.RS256;
  if (alg === 'ES256') return KEYS.ES256;
  if (alg === 'ES384') return KEYS.ES384;
  if (alg === 'EdDSA') return KEYS.EdDSA;
  throw new Error(`no key for ${alg}`);
}

const ALG_CLIENTS = { 'm2m-ps256': 'PS256', 'm2m-es256': 'ES256', 'm2m-es384': 'ES384', 'm2m-eddsa': 'EdDSA' };
const POOLS = { m2m: 'pool-a', 'm2m-other-pool': 'pool-b', alice: 'pool-a', bob: 'pool-b' };
const m2m = (client_id, client_secret) => ({
  client_id,
  client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: SCOPES.join(' '),
});
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
// More pre-registered clients, as a JSON array of client metadata (e.g. the gateway's vault
// client, whose redirect URI names the gateway's port).
const EXTRA_CLIENTS = JSON.parse(process.env.EXTRA_CLIENTS || '[]');
const CIMD = process.env.CIMD === '1';
const stats = { introspections: 0, exchanges: 0, cimd_fetches: [], defaulted_resource: {} };

const provider = new Provider(ISSUER, {
  // Every outbound fetch of oidc-provider (here: client metadata documents) is recorded; the
  // special-use-address dispatcher is dropped (see CIMD above).
  fetch: (url, options) => {
    stats.cimd_fetches.push(String(url));
    const { dispatcher: _loopbackGuard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  jwks: { keys: Object.values(KEYS).map((k) => k.jwk) },
  scopes: ['openid', 'offline_access', ...SCOPES],
  clients: [
    m2m('m2m', 'm2m-secret'),
    m2m('m2m-other-pool', 'other-secret'),
    m2m('m2m-short', 'short-secret'),
    ...Object.keys(ALG_CLIENTS).map((id) => m2m(id, `${id}-secret`)),
    { ...m2m('gateway', 'gateway-secret'), grant_types: ['client_credentials', EXCHANGE] },
    {
      client_id: 'public-native',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'none',
    },
    ...EXTRA_CLIENTS,
  ],
  pkce: { required: () => true },
  extraTokenClaims: async (_ctx, token) => {
    const who = token.accountId || token.clientId;
    const claims = {};
    if (POOLS[who]) claims.pool = POOLS[who];
    if (token.accountId) {
      claims.email = `${token.accountId}@example.com`;
      claims.metadata = { role: token.accountId === 'alice' ? 'admin' : 'member' };
    }
    return claims;
  },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientIdMetadataDocument: { enabled: CIMD, ack: CIMD ? 'draft-02' : undefined },
    resourceIndicators: {
      enabled: true,
      // Counted per route: a request that named no `resource` (RFC 8707) is defaulted here.
      defaultResource: (ctx, _client, oneOf) => {
        const route = ctx?.oidc?.route ?? 'unknown';
        stats.defaulted_resource[route] = (stats.defaulted_resource[route] ?? 0) + 1;
        return oneOf ?? RESOURCES[0];
      },
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator, client) => {
        if (!RESOURCES.includes(indicator)) throw new errors.InvalidTarget();
        const alg = ALG_CLIENTS[client?.clientId] || 'RS256';
        return {
          scope: SCOPES.join(' '),
          audience: indicator,
          accessTokenTTL: client?.clientId === 'm2m-short' ? 2 : 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg, kid: keyFor(alg).jwk.kid } },
        };
      },
    },
  },
});

// ---- token exchange (RFC 8693) -------------------------------------------------------------
const localJwks = jose.createLocalJWKSet({ keys: Object.values(KEYS).map((k) => publicJwk(k.jwk)) });

function publicJwk(jwk) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  return pub;
}

async function verifyOwnToken(token) {
  const { payload } = await jose.jwtVerify(token, localJwks, { issuer: ISSUER });
  return payload;
}

async function sign(claims, { alg = 'RS256', kid, foreign = false, typ = 'at+jwt', header: extra = {} } = {}) {
  let key;
  let keyId;
  if (foreign) {
    const other = makeKey(alg.startsWith('ES') ? 'ec' : 'rsa', alg.startsWith('ES') ? { namedCurve: 'P-256' } : { modulusLength: 2048 }, alg);
    key = other.privateKey;
    keyId = kid ?? `unknown-${randomBytes(4).toString('hex')}`;
  } else {
    const k = keyFor(alg);
    key = k.privateKey;
    keyId = kid ?? k.jwk.kid;
  }
  // `header` adds protected-header parameters (jku, x5u, x5c, crit…) for the attack tests.
  const header = { ...extra, alg, typ };
  if (keyId !== null) header.kid = keyId;
  return new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
}

provider.registerGrantType(EXCHANGE, async (ctx) => {
  const { client, params } = ctx.oidc;
  stats.exchanges += 1;
  const fail = (error, description) => {
    ctx.status = 400;
    ctx.body = { error, error_description: description };
  };
  if (params.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') {
    return fail('invalid_request', 'subject_token_type must be urn:ietf:params:oauth:token-type:access_token');
  }
  let subject;
  try {
    subject = await verifyOwnToken(params.subject_token);
  } catch (e) {
    return fail('invalid_grant', `subject_token is not valid: ${e.message}`);
  }
  const audience = params.audience || params.resource;
  if (!audience) return fail('invalid_target', 'audience or resource is required');
  const held = new Set(String(subject.scope || '').split(' ').filter(Boolean));
  const wanted = params.scope ? params.scope.split(' ').filter((s) => held.has(s)) : [...held];
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: ISSUER,
    sub: subject.sub,
    aud: audience,
    iat: now,
    exp: now + 300,
    jti: randomBytes(8).toString('hex'),
    scope: wanted.join(' '),
    client_id: client.clientId,
    act: { sub: client.clientId },
    exchanged_from: subject.jti,
  };
  ctx.body = {
    access_token: await sign(claims),
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: 'Bearer',
    expires_in: 300,
    scope: claims.scope,
  };
}, ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'], ['resource', 'audience']);

// ---- test-only endpoints -------------------------------------------------------------------
const revoked = new Set();
let introspectionMode = 'ok';

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function testEndpoint(req, res, path) {
  const text = await readBody(req);
  if (path === '/test/sign' && req.method === 'POST') {
    const body = JSON.parse(text || '{}');
    return send(res, 200, { token: await sign(body.claims || {}, body) });
  }
  if (path === '/test/revoke' && req.method === 'POST') {
    revoked.add(JSON.parse(text || '{}').jti);
    return send(res, 200, { revoked: [...revoked] });
  }
  if (path === '/test/introspection-mode' && req.method === 'POST') {
    introspectionMode = JSON.parse(text || '{}').mode || 'ok';
    return send(res, 200, { mode: introspectionMode });
  }
  if (path === '/test/stats') return send(res, 200, stats);
  if (path === '/test/introspect' && req.method === 'POST') {
    stats.introspections += 1;
    const expected = `Basic ${Buffer.from('gateway:gateway-secret').toString('base64')}`;
    if (req.headers.authorization !== expected) return send(res, 401, { error: 'invalid_client' });
    if (introspectionMode === 'error') return send(res, 500, { error: 'server_error' });
    const token = new URLSearchParams(text).get('token');
    try {
      const claims = await verifyOwnToken(token || '');
      if (revoked.has(claims.jti)) return send(res, 200, { active: false });
      return send(res, 200, { active: true, ...claims });
    } catch {
      return send(res, 200, { active: false });
    }
  }
  return send(res, 404, { error: 'not_found' });
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const path = new URL(req.url, ISSUER).pathname;
  if (path.startsWith('/test/')) {
    testEndpoint(req, res, path).catch((e) => send(res, 500, { error: 'server_error', error_description: String(e) }));
    return;
  }
  callback(req, res);
});
server.listen(PORT, '127.0.0.1', () => {
  console.log(`issuer ${ISSUER}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
