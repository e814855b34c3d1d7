// A local OpenID Connect provider for the browser tests: the real oidc-provider package (pinned
// in package-lock.json), one confidential client, an account store that signs anyone in, and
// oidc-provider's own development login and consent pages. Plain http on 127.0.0.1 only.
//
// Configured through the environment:
//   PORT               TCP port on 127.0.0.1; 0 (the default) picks a free one
//   ISSUER             default http://127.0.0.1:<port>
//   CLIENT_ID          the one registered client
//   CLIENT_SECRET
//   REDIRECT_URI       its allowed redirect URIs, comma-separated
//   TOKEN_AUTH_METHOD  client_secret_post (default) or client_secret_basic
//
// Any login name X signs in as subject X: email X@example.test (verified unless X starts with
// "unverified"), name "X User", given_name X, family_name User.
//
// Stdout carries exactly one line, once it listens: ready {"issuer": "...", "port": N}
// Everything else (oidc-provider's NOTICE and WARNING lines, errors) goes to stderr. It exits on
// SIGTERM or SIGINT, and when its stdin closes, so it dies with the process that started it.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

// oidc-provider prints its NOTICE lines with console.info (stdout), some at import time: send
// all console output to stderr before loading it, so stdout holds the ready line alone.
for (const name of ['log', 'info', 'debug']) {
  console[name] = (...args) => console.error(...args);
}

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} must be set`);
  return value;
}

const port = Number(process.env.PORT || 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT is not a port: ${process.env.PORT}`);
const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const redirectUris = required('REDIRECT_URI').split(',').map((uri) => uri.trim()).filter(Boolean);
const tokenAuthMethod = process.env.TOKEN_AUTH_METHOD || 'client_secret_post';
if (!['client_secret_post', 'client_secret_basic'].includes(tokenAuthMethod)) {
  fail(`TOKEN_AUTH_METHOD must be client_secret_post or client_secret_basic, not ${tokenAuthMethod}`);
}

let server;
function stop() {
  if (server) server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();

const { default: Provider } = await import('oidc-provider');

// A fresh RS256 signing key for every run: clients get it from jwks_uri.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

function claimsOf(login) {
  return {
    sub: login,
    email: `${login}@example.test`,
    email_verified: !login.startsWith('unverified'),
    name: `${login} User`,
    given_name: login,
    family_name: 'User',
  };
}

server = createServer();
server.once('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));
await new Promise((resolve) => { server.listen(port, '127.0.0.1', resolve); });
const actualPort = server.address().port;
const issuer = process.env.ISSUER || `http://127.0.0.1:${actualPort}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: tokenAuthMethod,
  }],
  jwks: { keys: [signingKey] },
  // Cookies are signed with a per-run key; over plain http oidc-provider leaves out "Secure".
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
  },
  // The scopes' claims go into the ID token as well, not only to the userinfo endpoint.
  conformIdTokenClaims: false,
  // PKCE on every authorization request; oidc-provider 9 accepts only S256.
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => claimsOf(id) };
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (_ctx, error) => {
    console.error(`oidc-provider ${event}: ${error?.name}: ${error?.message}`
      + (error?.error_description ? ` (${error.error_description})` : ''));
  });
}

// oidc-provider checks a static client's metadata on first use: do it now, so that a bad
// REDIRECT_URI fails the start rather than the first authorization request.
try {
  await provider.Client.find(clientId);
} catch (error) {
  fail(`invalid client configuration: ${error.message}${error.error_description ? ` (${error.error_description})` : ''}`);
}

server.on('request', provider.callback());
process.stdout.write(`ready {"issuer": ${JSON.stringify(issuer)}, "port": ${actualPort}}\n`);
