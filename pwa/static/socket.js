// The socket (docs/protocol.md §5): challenge → auth → welcome → catch-up → live, and
// re-auth. Exactly one WebSocket exists at any time (conn.ws); when it closes,
// reconnect.js decides when the next one opens.

import { makeProof } from './dpop.js';
import { auth, freshToken } from './device.js';
import { retry, schedule, retryDelay, forgiveIfLived, reactToClose } from './reconnect.js';
import { feed, applyEvent, saveSoon } from './view.js';
import { screen, setStatus, showNotLive, scheduleRender } from './render.js';
import { keepOverrides, onOverride, onOverrideClear } from './override.js';
import { ackSocket, ackReceived, ackRendered } from './ack.js';
import { onReload } from './reload.js';
import { onSchedule } from './schedule.js';

const DEFAULT_HEARTBEAT_S = 20;

// conn is the current socket and what its server said.
export const conn = {
  ws: null,            // THE socket: non-null from creation until its close event
  watchdogTimer: null,
  heartbeatS: DEFAULT_HEARTBEAT_S,
  welcomedAt: 0,       // when the current socket was welcomed; 0 if not yet
  sessionEpoch: '',    // the epoch the current socket's welcome named
  sessionFeed: '',     // the feed it named: a view of another (a moved device) is reset
};

function wsURL() {
  return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';
}

export function connect() {
  clearTimeout(retry.timer);
  retry.timer = null;
  // A socket that is open, opening or still closing blocks a new one; its close
  // event schedules the next attempt.
  if (!auth.device || conn.ws) return;
  let sock;
  try {
    sock = new WebSocket(wsURL());
  } catch {
    schedule(retryDelay());
    return;
  }
  conn.ws = sock;
  feed.synced = false;
  conn.welcomedAt = 0;
  conn.sessionEpoch = '';
  conn.heartbeatS = DEFAULT_HEARTBEAT_S;
  showNotLive();
  sock.onmessage = (e) => { if (sock === conn.ws) onMessage(sock, e.data); };
  sock.onclose = (e) => onClose(sock, e.code);
  armWatchdog();
  freshToken().catch(() => {}); // fetch it while the socket opens; failures surface at the challenge
}

// armWatchdog restarts the silence timer: anything heard proves the line is alive, and
// a silent one (a dead Wi-Fi link) may never report its own death.
function armWatchdog() {
  clearTimeout(conn.watchdogTimer);
  conn.watchdogTimer = setTimeout(() => { if (conn.ws) conn.ws.close(); }, 2.5 * conn.heartbeatS * 1000);
}

function onClose(sock, code) {
  if (sock !== conn.ws) return;
  conn.ws = null;
  clearTimeout(conn.watchdogTimer);
  feed.synced = false;
  forgiveIfLived(conn.welcomedAt);
  conn.welcomedAt = 0;
  if (!auth.device) return; // forgotten; a new pairing connects by itself
  showNotLive();
  reactToClose(code);
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
      conn.welcomedAt = Date.now();
      ackSocket(sock);
      retry.restartUntil = 0; // back: later failures are failures again
      conn.sessionEpoch = typeof m.epoch === 'string' ? m.epoch : '';
      conn.sessionFeed = typeof m.feed === 'string' ? m.feed : '';
      if (Number(m.heartbeat_s) > 0) conn.heartbeatS = Number(m.heartbeat_s);
      keepOverrides(m.overrides);
      if ('schedule' in m) onSchedule(m.schedule); // the feed's, or null: none
      armWatchdog();
      break;
    case 'reset':
      // The log cannot continue from our seq: the state that follows replaces all.
      feed.view = { events: [], lastSeq: 0, epoch: conn.sessionEpoch, feed: conn.sessionFeed };
      scheduleRender();
      saveSoon();
      break;
    case 'event':
      ackReceived(sock, m.seq);
      applyEvent(m);
      break;
    case 'synced':
      ackReceived(sock, m.seq);
      if (!screen.renderQueued) ackRendered(); // else the render acknowledges it
      feed.synced = true;
      screen.hasShown = true;
      feed.view.epoch = conn.sessionEpoch;
      feed.view.feed = conn.sessionFeed;
      setStatus('live');
      saveSoon();
      break;
    case 'override':
      onOverride(sock, m);
      break;
    case 'override_clear':
      onOverrideClear(m);
      break;
    case 'reload':
      onReload();
      break;
    case 'schedule':
      onSchedule(m.schedule);
      break;
    // 'heartbeat' only proves the line is alive, which armWatchdog noted.
  }
}

// authenticate answers a challenge (or a reauth) with a fresh token and a proof over
// its nonce.
async function authenticate(sock, nonce, again) {
  if (typeof nonce !== 'string' || !nonce) return;
  try {
    const dev = auth.device;
    const value = await freshToken(again ? sock.authToken : undefined);
    const proof = await makeProof(dev, 'GET', wsURL(), { nonce, accessToken: value });
    if (sock !== conn.ws || sock.readyState !== WebSocket.OPEN || auth.device !== dev) return;
    const view = feed.view;
    const msg = { type: 'auth', token: value, proof, since: again ? 0 : view.lastSeq || 0 };
    if (!again && view.epoch) msg.epoch = view.epoch;
    if (!again && view.feed) msg.feed = view.feed; // the feed lastSeq is of
    sock.authToken = value;
    sock.send(JSON.stringify(msg));
  } catch {
    // No token now (network, rate limit, server trouble; a revoked device was already
    // forgotten). At a challenge, give this socket up and back off. At a reauth the
    // server keeps us until the old token's expiry, then closes 4401 and we start over.
    if (!again && sock === conn.ws) sock.close();
  }
}
