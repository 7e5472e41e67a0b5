// Verifier for the acceptance tests, built on the `jose` package the way a
// Node service would use it: createRemoteJWKSet keeps the remote key set in
// its own cache, jwtVerify checks signature, algorithm, issuer, audience and
// time claims.
//
// Usage:
//   node verify.mjs --jwks URL --issuer ISS --audience AUD --alg ALG \
//       [--cache-max-age-ms N] [--cooldown-ms N] [--prime]
//
// Reads one "<id> <token>" line per token on stdin and prints one JSON line
// per token on stdout: {"id", "ok", "kid", "error", "code"}. Prints
// {"ready": true} once set up (after the first fetch with --prime).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const { values: opts } = parseArgs({
  options: {
    jwks: { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    alg: { type: 'string' },
    'cache-max-age-ms': { type: 'string', default: '600000' },
    'cooldown-ms': { type: 'string', default: '30000' },
    prime: { type: 'boolean', default: false },
  },
});

for (const name of ['jwks', 'issuer', 'audience', 'alg']) {
  if (!opts[name]) {
    process.stderr.write(`verify.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

const JWKS = createRemoteJWKSet(new URL(opts.jwks), {
  cacheMaxAge: Number(opts['cache-max-age-ms']),
  cooldownDuration: Number(opts['cooldown-ms']),
  timeoutDuration: 5000,
  headers: { 'User-Agent': 'jwt-rotor-acceptance node-jose' },
});

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function verifyLine(line) {
  const space = line.indexOf(' ');
  if (space < 0) {
    return;
  }
  const id = line.slice(0, space);
  const token = line.slice(space + 1).trim();
  let kid = '';
  try {
    kid = decodeProtectedHeader(token).kid ?? '';
    await jwtVerify(token, JWKS, {
      issuer: opts.issuer,
      audience: opts.audience,
      algorithms: [opts.alg],
      clockTolerance: 2,
    });
    print({ id, ok: true, kid });
  } catch (err) {
    print({ id, ok: false, kid, error: String(err?.message ?? err), code: err?.code ?? '' });
  }
}

if (opts.prime) {
  try {
    await JWKS.reload();
  } catch (err) {
    process.stderr.write(`verify.mjs: first JWKS fetch failed: ${err?.message ?? err}\n`);
    process.exit(1);
  }
}
print({ ready: true });

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
const pending = new Set();
rl.on('line', (line) => {
  const p = verifyLine(line).finally(() => pending.delete(p));
  pending.add(p);
});
rl.on('close', async () => {
  await Promise.allSettled([...pending]);
  process.exit(0);
});
