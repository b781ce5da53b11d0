// kioskfeed tablet app: the pairing screen and the live feed (docs/protocol.md §2–§5).
// Unpaired, it shows a code and a QR code for an administrator to approve (§3b), or on
// request the PIN form (§3).
//
// The tablet's only credential is a non-extractable P-256 key kept in IndexedDB.
// Access tokens live in memory only and are fetched with DPoP proofs signed by that
// key, so nothing copied off the tablet (storage, URL, manifest) works elsewhere.
// Exactly one WebSocket exists at any time, and every reconnect goes through
// schedule(), which owns the one reconnect timer.

const PIN_LETTERS = 'BCDFGHJKLMNPQRSTVWXZ'; // RFC 8628 §6.1: no vowels, no look-alikes
const FEED_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MAX_ITEMS = 20;
const TOKEN_MARGIN_MS = 60_000;      // refresh a token that expires sooner than this
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_CAP_MS = 30_000;
const BACKOFF_RESET_MS = 60_000;     // a connection that lived this long resets the backoff
const TOO_MANY_FLOOR_MS = 10_000;    // 4429: the server asked us to stay away a while
const RESTART_JITTER_MS = 2_000;     // 1012: spread a whole lobby's reconnects
const RESTART_WINDOW_MS = 30_000;    // after a 1012, failed attempts retry within the jitter this long
const DEFAULT_HEARTBEAT_S = 20;
const SAVE_DELAY_MS = 500;
const SW_UPDATE_MS = 6 * 60 * 60 * 1000;
const MAX_FIT_LEVEL = 8;             // app.css has a --scale for data-fit 0..8

const STATUS_TEXT = { live: 'Live', stale: 'Not live', connecting: 'Connecting' };
const INVALID_PIN_TEXT = 'That PIN is not valid for this feed. Ask for a new one.';
const GENERIC_PAIR_TEXT = 'Pairing did not work. Check the feed id and the network, then try again.';
const REVOKED_TEXT = 'This screen was unpaired. An administrator can pair it again with the code below.';
const DENIED_TEXT = 'An administrator declined the last code. This is a new one.';
const NO_CRYPTO_TEXT = 'This browser cannot keep a key here. Open the app over https.';
const CODE_OFFLINE_TEXT = 'Cannot reach the server. Trying again…';
const SLOW_DOWN_S = 5;                // RFC 8628 §3.5: add this to the interval at slow_down
const CODE_MIN_LEFT_MS = 30_000;      // a kept code this close to expiry is not shown again
const CODE_RETRY_BASE_MS = 5_000;
const CODE_RETRY_CAP_MS = 60_000;

const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();

let device = null;      // {privateKey, publicJwk, deviceId, feed}; null when not paired
let token = null;       // {value, expiresAt}: memory only, never stored or put in a URL
let tokenFetch = null;  // the one /api/token call in flight, shared by its callers
let dpopNonce = '';     // the newest DPoP-Nonce the server gave
let clockOffsetMs = 0;  // server time minus ours, when ours is far off

// What the screen shows: the newest state event (if any) and the items after it,
// oldest first, with the seq and epoch to resume from. Stored as `view`.
let view = emptyView();
let hasShown = false;   // something real is on screen (restored or synced once)
let renderQueued = false;
let saveTimer = null;
let freshSeq = 0;       // newest item already highlighted

let ws = null;          // THE socket: non-null from creation until its close event
let reconnectTimer = null;
let watchdogTimer = null;
let restartUntil = 0;   // after a 1012: the server is coming back, retry soon until then
let attempt = 0;        // backoff exponent
let heartbeatS = DEFAULT_HEARTBEAT_S;
let welcomedAt = 0;     // when the current socket was welcomed; 0 if not yet
let sessionEpoch = '';  // the epoch the current socket's welcome named
let synced = false;

function emptyView() {
  return { events: [], lastSeq: 0, epoch: '' };
}

// ---------- storage: IndexedDB `kioskfeed`, object store `kv` ----------

let dbOpen = null;

function db() {
  if (!dbOpen) {
    dbOpen = new Promise((resolve, reject) => {
      const req = indexedDB.open('kioskfeed', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('kv');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    dbOpen.catch(() => { dbOpen = null; }); // let a later call try again
  }
  return dbOpen;
}

async function kv(mode, op) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction('kv', mode);
    const req = op(tx.objectStore('kv'));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

const kvGet = (key) => kv('readonly', (s) => s.get(key));
const kvPut = (key, value) => kv('readwrite', (s) => s.put(value, key));
const kvDelete = (...keys) => kv('readwrite', (s) => { keys.forEach((k) => s.delete(k)); });

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), ms))]);
}

// ---------- DPoP proofs (docs/protocol.md §2) ----------

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const b64urlJSON = (value) => b64url(utf8.encode(JSON.stringify(value)));

// makeProof signs a DPoP proof with dev's key. WebCrypto's ECDSA signature is already
// the raw r‖s that JWS ES256 wants: no DER conversion.
async function makeProof(dev, htm, htu, { nonce, accessToken } = {}) {
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: dev.publicJwk };
  const claims = {
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
    htm,
    htu,
    iat: Math.floor((Date.now() + clockOffsetMs) / 1000),
  };
  if (nonce) claims.nonce = nonce;
  if (accessToken) claims.ath = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', utf8.encode(accessToken))));
  const input = b64urlJSON(header) + '.' + b64urlJSON(claims);
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, dev.privateKey, utf8.encode(input));
  return input + '.' + b64url(new Uint8Array(sig));
}

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
async function api(path, body, dev) {
  for (let retried = false; ; retried = true) {
    const proof = await makeProof(dev, 'POST', location.origin + path, { nonce: dpopNonce });
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
  if (nonce) dpopNonce = nonce;
  const date = Date.parse(res.headers.get('Date') || '');
  if (!Number.isNaN(date)) {
    const offset = date - Date.now();
    clockOffsetMs = Math.abs(offset) > 60_000 ? offset : 0;
  }
}

// ---------- tokens (docs/protocol.md §4) ----------

function setToken(res) {
  token = { value: res.access_token, expiresAt: Date.now() + (Number(res.expires_in) || 0) * 1000 };
}

// freshToken gives a token valid for at least another minute, fetching one if needed.
// replace names a token the server asked to be replaced (reauth): never hand it back.
function freshToken(replace) {
  if (token && token.value !== replace && token.expiresAt - Date.now() > TOKEN_MARGIN_MS) {
    return Promise.resolve(token.value);
  }
  if (!tokenFetch) {
    const dev = device;
    tokenFetch = api('/api/token', { device_id: dev.deviceId }, dev)
      .then((res) => {
        if (device === dev) setToken(res);
        return res.access_token;
      }, async (err) => {
        // The server no longer knows this key: it was revoked or replaced.
        if (err.code === 'invalid_token' && device === dev) await forgetDevice();
        throw err;
      })
      .finally(() => { tokenFetch = null; });
  }
  return tokenFetch;
}

// forgetDevice drops everything the tablet knew and goes back to pairing.
async function forgetDevice() {
  if (!device) return;
  device = null;
  token = null;
  attempt = 0;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  clearTimeout(saveTimer);
  saveTimer = null;
  if (ws) ws.close(1000); // ws stays set until its close event: no new socket before that
  view = emptyView();
  hasShown = false;
  scheduleRender();
  $('pair-note').textContent = REVOKED_TEXT;
  showPairing();
  try {
    await kvDelete('device', 'view');
  } catch { /* storage gone: nothing left to forget */ }
}

// ---------- pairing (docs/protocol.md §3) ----------

function formatPin(value) {
  const letters = [...value.toUpperCase()].filter((c) => PIN_LETTERS.includes(c)).join('').slice(0, 8);
  return letters.length > 4 ? letters.slice(0, 4) + '-' + letters.slice(4) : letters;
}

// deviceName is a hint for the admin's device list; the server keeps the full UA.
function deviceName() {
  const ua = navigator.userAgent || '';
  const ipad = /iPad/.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1);
  const kind = ipad ? 'iPad' : ['Android', 'iPhone', 'Windows', 'Linux', 'Mac'].find((k) => ua.includes(k));
  return kind ? kind + ' screen' : '';
}

// newDeviceKey makes the tablet's key pair. extractable=false: the private key can be
// used here but never read out, by us or by anyone with the tablet. A public key is
// always exportable.
async function newDeviceKey() {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', keys.publicKey);
  return { privateKey: keys.privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

// adoptDevice keeps the device a pairing made (with a PIN, or by an approved code) and
// switches to the feed: res is the server's token answer for candidate's key.
async function adoptDevice(candidate, res) {
  stopCodeFlow();
  const rec = { privateKey: candidate.privateKey, publicJwk: candidate.publicJwk, deviceId: res.device_id, feed: res.feed };
  try {
    // Structured clone stores the CryptoKey itself, still non-extractable.
    await kvPut('device', rec);
    await kvDelete('view', 'pending');
  } catch { /* no storage (private mode): works until the page is reloaded */ }
  device = rec;
  setToken(res);
  attempt = 0;
  view = emptyView();
  hasShown = false;
  freshSeq = 0;
  navigator.storage?.persist?.().catch(() => {}); // ask the browser not to evict the key
  $('pair-form').reset();
  $('pair-note').textContent = '';
  scheduleRender();
  showView('feed');
  connect();
}

async function pair(feed, pin) {
  const candidate = await newDeviceKey();
  const body = { feed, pin };
  const name = deviceName();
  if (name) body.name = name;
  const res = await api('/api/pair', body, candidate);
  await adoptDevice(candidate, res);
}

function pairErrorText(err) {
  switch (err?.code) {
    case 'invalid_pin':
      return INVALID_PIN_TEXT;
    case 'rate_limited': {
      const s = err.retryAfter || 60;
      const wait = s < 90 ? `${s} seconds` : `${Math.ceil(s / 60)} minutes`;
      return `Too many attempts from this network. Try again in ${wait}.`;
    }
    default:
      return GENERIC_PAIR_TEXT;
  }
}

async function onPairSubmit(e) {
  e.preventDefault();
  const error = $('pair-error');
  const feed = $('feed').value.trim().toLowerCase();
  const pin = formatPin($('pin').value);
  if (!FEED_ID.test(feed)) {
    error.textContent = 'Enter the feed id your administrator gave you, such as “lobby”.';
    return;
  }
  if (pin.length !== 9) {
    error.textContent = 'The PIN has 8 letters, such as WDJB-MJHT.';
    return;
  }
  if (!globalThis.crypto?.subtle) {
    error.textContent = NO_CRYPTO_TEXT;
    return;
  }
  const button = $('pair-submit');
  button.disabled = true;
  error.textContent = '';
  try {
    await pair(feed, pin);
  } catch (err) {
    error.textContent = pairErrorText(err);
    if (err?.code === 'invalid_pin') {
      $('pin').value = '';
      $('pin').focus();
    }
  } finally {
    button.disabled = false;
  }
}

// ---------- pairing by code (docs/protocol.md §3b, RFC 8628) ----------
//
// The tablet asks for a code bound to a new key, shows it with a QR code of the
// approval page, and polls at the interval the server gave (five seconds more after
// each slow_down) until an administrator approves it (the answer is the device and its
// first token), denies it, or it expires (a new code then). The pending request, key
// included, is kept in IndexedDB, so a reload shows the same code. At most one flow
// runs, and only on the pairing screen in code mode.

let pairMode = 'code';  // 'code' or 'pin': what the pairing screen shows
let flow = null;        // the running code flow: {stopped, timer, req, failures}

function showPairing() {
  showView('pair');
  if (pairMode === 'code') startCodeFlow();
}

function setPairMode(mode) {
  pairMode = mode;
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
  if (flow || device || pairMode !== 'code' || document.body.dataset.view !== 'pair') return;
  const f = { stopped: false, timer: null, req: null, failures: 0 };
  flow = f;
  resumeOrRequest(f);
}

function stopCodeFlow() {
  if (!flow) return;
  flow.stopped = true;
  clearTimeout(flow.timer);
  flow = null;
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

// ---------- the socket (docs/protocol.md §5) ----------

function wsURL() {
  return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';
}

// schedule is the only way to a new connection, and it keeps one timer.
function schedule(ms) {
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, ms);
}

// retryDelay is how long to wait after a failed attempt: soon (jittered) while a server
// that said it was restarting comes back, the doubling backoff otherwise. Doubling
// there would leave a whole lobby waiting up to 30 s for a server that was back in 3.
function retryDelay() {
  return Date.now() < restartUntil ? Math.random() * RESTART_JITTER_MS : backoff();
}

// backoff is full jitter: random in [0, min(cap, base·2^attempt)).
function backoff() {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  attempt = Math.min(attempt + 1, 10);
  return Math.random() * ceiling;
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  // A socket that is open, opening or still closing blocks a new one; its close
  // event schedules the next attempt.
  if (!device || ws) return;
  let sock;
  try {
    sock = new WebSocket(wsURL());
  } catch {
    schedule(retryDelay());
    return;
  }
  ws = sock;
  synced = false;
  welcomedAt = 0;
  sessionEpoch = '';
  heartbeatS = DEFAULT_HEARTBEAT_S;
  showNotLive();
  sock.onmessage = (e) => { if (sock === ws) onMessage(sock, e.data); };
  sock.onclose = (e) => onClose(sock, e.code);
  armWatchdog();
  freshToken().catch(() => {}); // fetch it while the socket opens; failures surface at the challenge
}

// armWatchdog restarts the silence timer: anything heard proves the line is alive, and
// a silent one (a dead Wi-Fi link) may never report its own death.
function armWatchdog() {
  clearTimeout(watchdogTimer);
  watchdogTimer = setTimeout(() => { if (ws) ws.close(); }, 2.5 * heartbeatS * 1000);
}

function onClose(sock, code) {
  if (sock !== ws) return;
  ws = null;
  clearTimeout(watchdogTimer);
  synced = false;
  if (welcomedAt && Date.now() - welcomedAt >= BACKOFF_RESET_MS) attempt = 0;
  welcomedAt = 0;
  if (!device) return; // forgotten; a new pairing connects by itself
  showNotLive();
  switch (code) {
    case 4403: // revoked or unknown
      forgetDevice();
      return;
    case 4401: // token or proof refused: the next challenge fetches a new token
      token = null;
      schedule(backoff());
      return;
    case 4429:
      schedule(TOO_MANY_FLOOR_MS + backoff());
      return;
    case 1012: // the server is restarting: come back soon, not all at once
      restartUntil = Date.now() + RESTART_WINDOW_MS;
      schedule(Math.random() * RESTART_JITTER_MS);
      return;
    default: // 4400, 4408, 4409, 1003, 1009, 1011, 1013, network loss, our watchdog
      schedule(retryDelay());
  }
}

function onMessage(sock, raw) {
  armWatchdog();
  let m;
  try {
    m = JSON.parse(raw);
  } catch {
    return;
  }
  switch (m?.type) {
    case 'challenge':
      authenticate(sock, m.nonce, false);
      break;
    case 'reauth':
      authenticate(sock, m.nonce, true);
      break;
    case 'welcome':
      welcomedAt = Date.now();
      restartUntil = 0; // back: later failures are failures again
      sessionEpoch = typeof m.epoch === 'string' ? m.epoch : '';
      if (Number(m.heartbeat_s) > 0) heartbeatS = Number(m.heartbeat_s);
      armWatchdog();
      break;
    case 'reset':
      // The log cannot continue from our seq: the state that follows replaces all.
      view = { events: [], lastSeq: 0, epoch: sessionEpoch };
      scheduleRender();
      saveSoon();
      break;
    case 'event':
      applyEvent(m);
      break;
    case 'synced':
      synced = true;
      hasShown = true;
      view.epoch = sessionEpoch;
      setStatus('live');
      saveSoon();
      break;
    // 'heartbeat' only proves the line is alive, which armWatchdog noted.
  }
}

// authenticate answers a challenge (or a reauth) with a fresh token and a proof over
// its nonce.
async function authenticate(sock, nonce, again) {
  if (typeof nonce !== 'string' || !nonce) return;
  try {
    const dev = device;
    const value = await freshToken(again ? sock.authToken : undefined);
    const proof = await makeProof(dev, 'GET', wsURL(), { nonce, accessToken: value });
    if (sock !== ws || sock.readyState !== WebSocket.OPEN || device !== dev) return;
    const msg = { type: 'auth', token: value, proof, since: again ? 0 : view.lastSeq || 0 };
    if (!again && view.epoch) msg.epoch = view.epoch;
    sock.authToken = value;
    sock.send(JSON.stringify(msg));
  } catch {
    // No token now (network, rate limit, server trouble; a revoked device was already
    // forgotten). At a challenge, give this socket up and back off. At a reauth the
    // server keeps us until the old token's expiry, then closes 4401 and we start over.
    if (!again && sock === ws) sock.close();
  }
}

function applyEvent(m) {
  const seq = Number(m.seq);
  if (!Number.isSafeInteger(seq) || seq <= view.lastSeq) return; // never apply one twice
  const ev = { seq, kind: m.kind, data: isObject(m.data) ? m.data : {} };
  if (ev.kind === 'state') {
    view.events = [ev];
  } else if (ev.kind === 'clear') {
    view.events = [];
  } else if (ev.kind === 'item') {
    view.events.push(ev);
    const first = view.events[0].kind === 'state' ? 1 : 0;
    const excess = view.events.length - first - MAX_ITEMS;
    if (excess > 0) view.events.splice(first, excess);
  }
  view.lastSeq = seq;
  scheduleRender();
  saveSoon();
}

// saveSoon stores the view at most twice a second: a burst of items costs one write,
// and events and lastSeq are always stored together, so a restart resumes exactly.
function saveSoon() {
  saveTimer ??= setTimeout(saveView, SAVE_DELAY_MS);
}

function saveView() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (!device) return;
  kvPut('view', { events: view.events, lastSeq: view.lastSeq, epoch: view.epoch }).catch(() => {});
}

// ---------- rendering ----------

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

function showView(name) {
  document.body.dataset.view = name;
  if (name === 'feed') scheduleRender();
}

function setStatus(state) {
  $('status').dataset.state = state;
  $('status-text').textContent = STATUS_TEXT[state];
}

// showNotLive: "stale" when an older screen is showing, "connecting" right after pairing.
function showNotLive() {
  setStatus(hasShown ? 'stale' : 'connecting');
}

// scheduleRender draws once per frame, so a reset and the state after it (separate
// messages) never show the blank screen in between.
function scheduleRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

// render draws from data with textContent only: feed content is never parsed as HTML.
function render() {
  renderQueued = false;
  const state = view.events[0]?.kind === 'state' ? view.events[0].data : {};
  $('title').textContent = text(state.title);
  $('body').textContent = text(state.body);

  const table = $('rows');
  const rows = Array.isArray(state.rows) ? state.rows.filter(Array.isArray) : [];
  if (rows.length) {
    const tbody = document.createElement('tbody');
    for (const row of rows) {
      const tr = tbody.insertRow();
      for (const cell of row) tr.insertCell().textContent = text(cell);
    }
    table.replaceChildren(tbody);
  } else {
    table.replaceChildren();
  }

  const list = Array.isArray(state.list) ? state.list : [];
  $('list').replaceChildren(...list.map((s) => li(text(s))));

  const items = view.events.filter((e) => e.kind === 'item').slice(-MAX_ITEMS).reverse();
  $('items').replaceChildren(...items.map((e) => li(text(e.data.text))));
  const newest = items[0]?.seq || 0;
  if (synced && newest > freshSeq) $('items').firstChild.classList.add('fresh');
  freshSeq = Math.max(freshSeq, newest);

  fit();
}

function li(content) {
  const el = document.createElement('li');
  el.textContent = content;
  return el;
}

// fit steps the type down until the panel fits the screen: nothing may scroll on a
// wall tablet. Items are exempt; the oldest simply fall off the bottom.
function fit() {
  const screen = $('feed-screen');
  if (document.body.dataset.view !== 'feed') return;
  const panel = screen.querySelector('.panel');
  const overflows = () => panel.scrollHeight > panel.clientHeight + 1 || panel.scrollWidth > panel.clientWidth + 1 ||
    screen.scrollHeight > screen.clientHeight + 1;
  let level = 0;
  screen.dataset.fit = '0';
  while (level < MAX_FIT_LEVEL && overflows()) screen.dataset.fit = String(++level);
}

// ---------- kiosk ----------

let wakeLock = null;
let wakeLockPending = false;

// keepAwake holds a screen Wake Lock while visible. The browser drops it whenever
// the page is hidden, so visibilitychange asks again; a refusal (battery saver, no
// user gesture yet) is retried on the next touch.
async function keepAwake() {
  if (wakeLock || wakeLockPending || !navigator.wakeLock || document.visibilityState !== 'visible') return;
  wakeLockPending = true;
  try {
    const lock = await navigator.wakeLock.request('screen');
    lock.addEventListener('release', () => { if (wakeLock === lock) wakeLock = null; });
    wakeLock = lock;
  } catch { /* refused: see above */ } finally {
    wakeLockPending = false;
  }
}

const inField = (t) => !!(t instanceof Element ? t : t?.parentElement)?.closest('input, textarea');

function installKioskGuards() {
  // No menus, selections, drags or pinches: visitors cannot do anything to the screen.
  for (const type of ['contextmenu', 'selectstart', 'dragstart', 'gesturestart']) {
    document.addEventListener(type, (e) => { if (!inField(e.target)) e.preventDefault(); }, { passive: false });
  }
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') keepAwake();
    else if (saveTimer) saveView(); // the tab may be frozen or killed next
  });
  document.addEventListener('pointerdown', keepAwake, { passive: true });
  window.addEventListener('resize', scheduleRender);
}

function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  let hadController = !!navigator.serviceWorker.controller;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    // A new build took over. A kiosk never reloads by itself, so load it now, unless
    // someone is typing on the pairing screen.
    if (hadController && document.body.dataset.view === 'feed') location.reload();
    hadController = true;
  });
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).then((reg) => {
    // Browsers look for a new worker on navigation, which a kiosk never does.
    setInterval(() => reg.update().catch(() => {}), SW_UPDATE_MS);
  }).catch(() => { /* no offline shell; the app still works online */ });
}

// ---------- start ----------

function validDevice(rec) {
  return isObject(rec) && rec.privateKey instanceof CryptoKey && isObject(rec.publicJwk) &&
    typeof rec.deviceId === 'string' && rec.deviceId !== '';
}

function validView(v) {
  return isObject(v) && Array.isArray(v.events) && Number.isSafeInteger(v.lastSeq) &&
    v.events.every((e) => isObject(e) && Number.isSafeInteger(e.seq) && typeof e.kind === 'string' && isObject(e.data));
}

async function start() {
  installKioskGuards();
  $('pair-form').addEventListener('submit', onPairSubmit);
  $('use-pin').addEventListener('click', () => setPairMode('pin'));
  $('use-code').addEventListener('click', () => setPairMode('code'));
  const pinInput = $('pin');
  pinInput.addEventListener('input', () => {
    const formatted = formatPin(pinInput.value);
    if (formatted !== pinInput.value) {
      pinInput.value = formatted;
      pinInput.setSelectionRange(formatted.length, formatted.length);
    }
  });
  registerServiceWorker();

  // Some WebKit builds never answer the first IndexedDB open after launch: try twice.
  let loaded = null;
  for (let tries = 0; tries < 2 && !loaded; tries++) {
    try {
      loaded = await withTimeout(Promise.all([kvGet('device'), kvGet('view')]), 4000);
    } catch {
      dbOpen = null;
    }
  }
  const [rec, saved] = loaded || [];
  if (validDevice(rec)) {
    device = rec;
    if (validView(saved)) view = { events: saved.events, lastSeq: saved.lastSeq, epoch: text(saved.epoch) };
    hasShown = true; // the last state, marked stale until the socket is synced
    freshSeq = view.events.reduce((n, e) => Math.max(n, e.seq), 0);
    setStatus('stale');
    showView('feed');
    connect();
  } else {
    showPairing();
  }
  keepAwake();
}

start();
