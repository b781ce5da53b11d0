// Pairing by code (docs/protocol.md §3b, RFC 8628).
//
// The tablet asks for a code bound to a new key, shows it with a QR code of the
// approval page, and polls at the interval the server gave (five seconds more after
// each slow_down) until an administrator approves it (the answer is the device and its
// first token), denies it, or it expires (a new code then). The pending request, key
// included, is kept in IndexedDB, so a reload shows the same code. At most one flow
// runs, and only on the pairing screen in code mode.

import { api, newDeviceKey } from './dpop.js';
import { kvGet, kvPut, kvDelete } from './storage.js';
import { auth, adoptDevice } from './device.js';
import { deviceName, NO_CRYPTO_TEXT } from './pin.js';
import { $, isObject, text, showView } from './render.js';

const DENIED_TEXT = 'An administrator declined the last code. This is a new one.';
const CODE_OFFLINE_TEXT = 'Cannot reach the server. Trying again…';
const SLOW_DOWN_S = 5;                // RFC 8628 §3.5: add this to the interval at slow_down
const CODE_MIN_LEFT_MS = 30_000;      // a kept code this close to expiry is not shown again
const CODE_RETRY_BASE_MS = 5_000;
const CODE_RETRY_CAP_MS = 60_000;

// pairScreen is what the pairing screen shows and does.
export const pairScreen = {
  mode: 'code', // 'code' or 'pin'
  flow: null,   // the running code flow: {stopped, timer, req, failures}
};

export function showPairing() {
  showView('pair');
  if (pairScreen.mode === 'code') startCodeFlow();
}

export function setPairMode(mode) {
  pairScreen.mode = mode;
  $('pair-screen').dataset.mode = mode;
  if (mode === 'pin') {
    stopCodeFlow();
    $('feed').focus();
  } else {
    $('pair-error').textContent = '';
    startCodeFlow();
  }
}

function startCodeFlow() {
  if (pairScreen.flow || auth.device || pairScreen.mode !== 'code' || document.body.dataset.view !== 'pair') return;
  const f = { stopped: false, timer: null, req: null, failures: 0 };
  pairScreen.flow = f;
  resumeOrRequest(f);
}

export function stopCodeFlow() {
  const f = pairScreen.flow;
  if (!f) return;
  f.stopped = true;
  clearTimeout(f.timer);
  pairScreen.flow = null;
}

// later runs step(f) after ms, unless the flow has been stopped by then.
function later(f, ms, step) {
  clearTimeout(f.timer);
  f.timer = setTimeout(() => { if (!f.stopped) step(f); }, ms);
}

function validPending(p) {
  return isObject(p) && p.privateKey instanceof CryptoKey && isObject(p.publicJwk) &&
    typeof p.requestId === 'string' && typeof p.userCode === 'string' &&
    Number.isFinite(p.expiresAt) && Number.isFinite(p.interval) && p.interval > 0;
}

async function resumeOrRequest(f) {
  let saved = null;
  try {
    saved = await kvGet('pending');
  } catch { /* no storage: a new code */ }
  if (f.stopped) return;
  if (validPending(saved) && saved.expiresAt - Date.now() > CODE_MIN_LEFT_MS) {
    f.req = saved;
    showCode(saved);
    later(f, saved.interval * 1000, poll);
  } else {
    requestCode(f);
  }
}

// codeRetry is how long to wait after a failed call: what a 429 asks, else a doubling
// delay with jitter, so that a lobby of tablets does not come back at once.
function codeRetry(f, err) {
  f.failures = Math.min(f.failures + 1, 8);
  if (err?.code === 'rate_limited' && err.retryAfter > 0) return err.retryAfter * 1000;
  const ceiling = Math.min(CODE_RETRY_CAP_MS, CODE_RETRY_BASE_MS * 2 ** (f.failures - 1));
  return ceiling / 2 + Math.random() * ceiling / 2;
}

async function requestCode(f) {
  f.req = null;
  showCode(null);
  if (!globalThis.crypto?.subtle) {
    $('code-status').textContent = NO_CRYPTO_TEXT;
    return;
  }
  try {
    const candidate = await newDeviceKey();
    const body = {};
    const name = deviceName();
    if (name) body.name = name;
    const res = await api('/api/pair/requests', body, candidate);
    if (f.stopped) return;
    const req = {
      ...candidate,
      requestId: String(res.request_id),
      userCode: String(res.user_code),
      verificationUri: text(res.verification_uri),
      expiresAt: Date.now() + (Number(res.expires_in) || 600) * 1000,
      interval: Math.max(Number(res.interval) || 5, 1),
    };
    f.req = req;
    f.failures = 0;
    try {
      await kvPut('pending', req);
    } catch { /* no storage: a reload asks for a new code */ }
    if (f.stopped) return;
    showCode(req);
    later(f, req.interval * 1000, poll);
  } catch (err) {
    if (f.stopped) return;
    $('code-status').textContent = err?.code === 'rate_limited'
      ? 'Too many screens are waiting for approval on this network. A code comes as soon as one is approved.'
      : CODE_OFFLINE_TEXT;
    later(f, codeRetry(f, err), requestCode);
  }
}

async function poll(f) {
  const req = f.req;
  if (Date.now() >= req.expiresAt) {
    newCode(f, '');
    return;
  }
  let res;
  try {
    res = await api('/api/pair/requests/' + encodeURIComponent(req.requestId) + '/poll', {}, req);
  } catch (err) {
    if (f.stopped) return;
    switch (err.code) {
      case 'authorization_pending':
        f.failures = 0;
        $('code-status').textContent = '';
        later(f, req.interval * 1000, poll);
        return;
      case 'slow_down':
        req.interval += SLOW_DOWN_S;
        kvPut('pending', req).catch(() => {});
        later(f, req.interval * 1000, poll);
        return;
      case 'access_denied':
        newCode(f, DENIED_TEXT);
        return;
      case 'expired_token':
      case 'invalid_dpop_proof': // the request is not this key's (any more)
        newCode(f, '');
        return;
      default: // network, rate limit, server trouble: the same request, later
        $('code-status').textContent = err.code === 'rate_limited' ? '' : CODE_OFFLINE_TEXT;
        later(f, Math.max(req.interval * 1000, codeRetry(f, err)), poll);
        return;
    }
  }
  if (f.stopped) return;
  await adoptDevice(req, res);
}

async function newCode(f, note) {
  $('pair-note').textContent = note;
  try {
    await kvDelete('pending');
  } catch { /* nothing kept */ }
  if (!f.stopped) requestCode(f);
}

// showCode puts a request's code and QR code on the screen (req null: none yet). The QR
// image is drawn by the server from the code alone: no script library, same origin.
function showCode(req) {
  const code = $('user-code');
  const qr = $('pair-qr');
  $('code-status').textContent = '';
  if (!req) {
    code.textContent = '····-····';
    code.dataset.state = 'loading';
    qr.removeAttribute('src');
    return;
  }
  code.textContent = req.userCode;
  code.dataset.state = 'ready';
  if (req.verificationUri) $('verification-uri').textContent = req.verificationUri;
  const src = '/api/pair/qr.svg?code=' + encodeURIComponent(req.userCode);
  if (qr.getAttribute('src') !== src) qr.setAttribute('src', src);
}
