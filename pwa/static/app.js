// kioskfeed tablet app: the pairing screen and the live feed (docs/protocol.md §2–§5).
// Unpaired, it shows a code and a QR code for an administrator to approve (§3b), or on
// request the PIN form (§3).
//
// The tablet's only credential is a non-extractable P-256 key kept in IndexedDB.
// Access tokens live in memory only and are fetched with DPoP proofs signed by that
// key, so nothing copied off the tablet (storage, URL, manifest) works elsewhere.
// Exactly one WebSocket exists at any time, and every reconnect goes through
// schedule(), which owns the one reconnect timer.
//
// This is the entry module; each concern is a module with one exported state object
// (none of them holds a global):
//   storage.js    IndexedDB                        storage  {opening}
//   dpop.js       device key, DPoP proofs, api()   server   {nonce, clockOffsetMs}
//   device.js     pairing result, tokens           auth     {device, token, tokenFetch}
//   pin.js        pairing with a PIN (§3)
//   code.js       pairing by code (§3b)            pairScreen {mode, flow}
//   socket.js     the socket (§5)                  conn     {ws, watchdogTimer, heartbeatS, welcomedAt, sessionEpoch, sessionFeed}
//   reconnect.js  the reconnect policy (§5)        retry    {timer, restartUntil, attempt}
//   view.js       the view and its saving          feed     {view, saveTimer, synced}
//   render.js     drawing the screen               screen   {hasShown, renderQueued, freshSeq}
//   kiosk.js      wake lock, guards, worker        wake     {lock, pending}
//   override.js   emergency overrides (§5)         overrides {active, timer, inForce}
//   reload.js     the reload message (§5)
//   schedule.js   screen schedules (§5, §6)        sleep    {spec, fromServer, asleep, timer}
// Modules import each other by relative URL ('./socket.js'); the server rewrites those
// to the hashed URLs it serves (pwa/doc.go). The imports form cycles, which is safe
// because no module uses an import while it is being evaluated, only when called.

import { storage, kvGet, withTimeout } from './storage.js';
import { auth, validDevice } from './device.js';
import { formatPin, onPairSubmit } from './pin.js';
import { setPairMode, showPairing } from './code.js';
import { connect } from './socket.js';
import { feed, validView } from './view.js';
import { $, screen, setStatus, showView, text } from './render.js';
import { installKioskGuards, keepAwake, registerServiceWorker } from './kiosk.js';
import { restoreOverrides } from './override.js';
import { restoreSchedule } from './schedule.js';

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
      storage.opening = null;
    }
  }
  const [rec, saved] = loaded || [];
  restoreOverrides(); // an override in force shows even while offline
  restoreSchedule(); // and the screen sleeps on time
  if (validDevice(rec)) {
    auth.device = rec;
    if (validView(saved)) feed.view = { events: saved.events, lastSeq: saved.lastSeq, epoch: text(saved.epoch), feed: text(saved.feed) };
    screen.hasShown = true; // the last state, marked stale until the socket is synced
    screen.freshSeq = feed.view.events.reduce((n, e) => Math.max(n, e.seq), 0);
    setStatus('stale');
    showView('feed');
    connect();
  } else {
    showPairing();
  }
  keepAwake();
}

start();
