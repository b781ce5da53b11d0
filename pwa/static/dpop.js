// The device key and DPoP proofs (docs/protocol.md §2), and api(), the one way this app
// calls the server's HTTP API.

const utf8 = new TextEncoder();

// server is what the server's answers taught us, for the next proof.
export const server = {
  nonce: '',        // the newest DPoP-Nonce the server gave
  clockOffsetMs: 0, // server time minus ours, when ours is far off
};

// newDeviceKey makes the tablet's key pair. extractable=false: the private key can be
// used here but never read out, by us or by anyone with the tablet. A public key is
// always exportable.
export async function newDeviceKey() {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', keys.publicKey);
  return { privateKey: keys.privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const b64urlJSON = (value) => b64url(utf8.encode(JSON.stringify(value)));

// makeProof signs a DPoP proof with dev's key. WebCrypto's ECDSA signature is already
// the raw r‖s that JWS ES256 wants: no DER conversion.
export async function makeProof(dev, htm, htu, { nonce, accessToken } = {}) {
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: dev.publicJwk };
  const claims = {
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
    htm,
    htu,
    iat: Math.floor((Date.now() + server.clockOffsetMs) / 1000),
  };
  if (nonce) claims.nonce = nonce;
  if (accessToken) claims.ath = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', utf8.encode(accessToken))));
  const input = b64urlJSON(header) + '.' + b64urlJSON(claims);
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, dev.privateKey, utf8.encode(input));
  return input + '.' + b64url(new Uint8Array(sig));
}

// ApiError is how api() fails: code is the server's error code (docs/protocol.md), or
// 'network' when no answer came.
class ApiError extends Error {
  constructor(status, code, retryAfter = 0) {
    super(code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// api POSTs body to path with a proof over the newest server nonce. Without a valid
// nonce the server answers use_dpop_nonce with a fresh one: retry once (RFC 9449 §8).
export async function api(path, body, dev) {
  for (let retried = false; ; retried = true) {
    const proof = await makeProof(dev, 'POST', location.origin + path, { nonce: server.nonce });
    let res;
    try {
      res = await fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', DPoP: proof },
        body: JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'network');
    }
    noteServer(res);
    const data = await res.json().catch(() => ({}));
    if (res.ok) return data;
    const code = typeof data?.error === 'string' ? data.error : 'http_' + res.status;
    if (code === 'use_dpop_nonce' && !retried) continue;
    throw new ApiError(res.status, code, Number(res.headers.get('Retry-After')) || 0);
  }
}

// noteServer keeps the nonce for the next call, and the server's clock when ours is
// badly off: a tablet back from a flat battery can be hours wrong, and proofs must be
// within minutes of server time.
function noteServer(res) {
  const nonce = res.headers.get('DPoP-Nonce');
  if (nonce) server.nonce = nonce;
  const date = Date.parse(res.headers.get('Date') || '');
  if (!Number.isNaN(date)) {
    const offset = date - Date.now();
    server.clockOffsetMs = Math.abs(offset) > 60_000 ? offset : 0;
  }
}
