// The device: the tablet's identity once paired, and its access token (docs/protocol.md
// §4). adoptDevice and forgetDevice are the only ways into and out of being paired.

import { api } from './dpop.js';
import { kvPut, kvDelete } from './storage.js';
import { retry } from './reconnect.js';
import { conn, connect } from './socket.js';
import { feed, emptyView } from './view.js';
import { $, isObject, screen, scheduleRender, showView } from './render.js';
import { showPairing, stopCodeFlow } from './code.js';
import { dropOverrides } from './override.js';

const TOKEN_MARGIN_MS = 60_000; // refresh a token that expires sooner than this
const REVOKED_TEXT = 'This screen was unpaired. An administrator can pair it again with the code below.';

// auth is who this tablet is to the server.
export const auth = {
  device: null,     // {privateKey, publicJwk, deviceId, feed}; null when not paired
  token: null,      // {value, expiresAt}: memory only, never stored or put in a URL
  tokenFetch: null, // the one /api/token call in flight, shared by its callers
};

function setToken(res) {
  auth.token = { value: res.access_token, expiresAt: Date.now() + (Number(res.expires_in) || 0) * 1000 };
}

// freshToken gives a token valid for at least another minute, fetching one if needed.
// replace names a token the server asked to be replaced (reauth): never hand it back.
export function freshToken(replace) {
  const token = auth.token;
  if (token && token.value !== replace && token.expiresAt - Date.now() > TOKEN_MARGIN_MS) {
    return Promise.resolve(token.value);
  }
  if (!auth.tokenFetch) {
    const dev = auth.device;
    auth.tokenFetch = api('/api/token', { device_id: dev.deviceId }, dev)
      .then((res) => {
        if (auth.device === dev) setToken(res);
        return res.access_token;
      }, async (err) => {
        // The server no longer knows this key: it was revoked or replaced.
        if (err.code === 'invalid_token' && auth.device === dev) await forgetDevice();
        throw err;
      })
      .finally(() => { auth.tokenFetch = null; });
  }
  return auth.tokenFetch;
}

// adoptDevice keeps the device a pairing made (with a PIN, or by an approved code) and
// switches to the feed: res is the server's token answer for candidate's key.
export async function adoptDevice(candidate, res) {
  stopCodeFlow();
  const rec = { privateKey: candidate.privateKey, publicJwk: candidate.publicJwk, deviceId: res.device_id, feed: res.feed };
  try {
    // Structured clone stores the CryptoKey itself, still non-extractable.
    await kvPut('device', rec);
    await kvDelete('view', 'pending');
  } catch { /* no storage (private mode): works until the page is reloaded */ }
  auth.device = rec;
  setToken(res);
  retry.attempt = 0;
  feed.view = emptyView();
  screen.hasShown = false;
  screen.freshSeq = 0;
  navigator.storage?.persist?.().catch(() => {}); // ask the browser not to evict the key
  $('pair-form').reset();
  $('pair-note').textContent = '';
  scheduleRender();
  showView('feed');
  connect();
}

// forgetDevice drops everything the tablet knew and goes back to pairing.
export async function forgetDevice() {
  if (!auth.device) return;
  auth.device = null;
  auth.token = null;
  retry.attempt = 0;
  clearTimeout(retry.timer);
  retry.timer = null;
  clearTimeout(feed.saveTimer);
  feed.saveTimer = null;
  if (conn.ws) conn.ws.close(1000); // conn.ws stays set until its close event: no new socket before that
  feed.view = emptyView();
  screen.hasShown = false;
  scheduleRender();
  dropOverrides(); // a revoked tablet is no longer told when they end
  $('pair-note').textContent = REVOKED_TEXT;
  showPairing();
  try {
    await kvDelete('device', 'view');
  } catch { /* storage gone: nothing left to forget */ }
}

// validDevice checks a device record read back from storage.
export function validDevice(rec) {
  return isObject(rec) && rec.privateKey instanceof CryptoKey && isObject(rec.publicJwk) &&
    typeof rec.deviceId === 'string' && rec.deviceId !== '';
}
