// Emergency overrides (docs/protocol.md §5, #ws-override): a message that covers the
// whole screen, above everything, until it is cleared (override_clear) or expires. The
// copy is kept in IndexedDB (`overrides`), so a reload or a restart while the server is
// unreachable still shows it until its expires_at. Once it is on screen the tablet
// acknowledges it on the socket it came on ({"type":"shown","override":id}).
// Its text only ever reaches the page as textContent.

import { kvGet, kvPut } from './storage.js';
import { server } from './dpop.js';
import { conn } from './socket.js';

const HEADINGS = { danger: 'EMERGENCY', warning: 'WARNING', info: 'NOTICE' };
const MAX_OVERRIDES = 16;                    // as the server's bound
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

// overrides is what is in force on this tablet.
export const overrides = {
  active: new Map(), // id → {id, title, body, level, created_at, expires_at}
  timer: null,       // the next expiry
  inForce: null,     // ids the newest welcome named; null before any welcome
};

function now() {
  return Date.now() + server.clockOffsetMs;
}

// clean keeps the fields the screen uses, or returns null for a message that is not one.
function clean(m) {
  if (!m || typeof m.id !== 'string' || !ID_RE.test(m.id)) return null;
  const expires = Date.parse(m.expires_at);
  if (!Number.isFinite(expires)) return null;
  const str = (v, n) => (typeof v === 'string' ? v.slice(0, n) : '');
  return {
    id: m.id,
    title: str(m.title, 120),
    body: str(m.body, 2000),
    level: Object.hasOwn(HEADINGS, m.level) ? m.level : 'danger',
    created_at: str(m.created_at, 40),
    expires_at: str(m.expires_at, 40),
  };
}

// restoreOverrides shows what was in force when the tablet last ran (app.js, at start).
export async function restoreOverrides() {
  try {
    const saved = await kvGet('overrides');
    if (Array.isArray(saved)) {
      for (const s of saved.slice(0, MAX_OVERRIDES)) {
        const o = clean(s);
        // A welcome that came first has the last word on what is still in force.
        if (o && !overrides.active.has(o.id) && (!overrides.inForce || overrides.inForce.includes(o.id))) {
          overrides.active.set(o.id, o);
        }
      }
    }
  } catch { /* no storage: only live overrides show */ }
  draw();
}

// onOverride takes an override message from the socket sock.
export function onOverride(sock, m) {
  const o = clean(m);
  if (!o) return;
  if (!overrides.active.has(o.id) && overrides.active.size >= MAX_OVERRIDES) return;
  overrides.active.set(o.id, o);
  save();
  draw();
  // Acknowledged once it has been painted, on the socket it came on.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    if (sock === conn.ws && sock.readyState === WebSocket.OPEN && overrides.active.has(o.id) &&
        document.getElementById('override')?.dataset.ids?.split(' ').includes(o.id)) {
      sock.send(JSON.stringify({ type: 'shown', override: o.id }));
    }
  }));
}

// keepOverrides keeps of the stored overrides those a welcome names as in force (ids):
// the others ended while the tablet was away. Their full copies follow after synced.
export function keepOverrides(ids) {
  if (!Array.isArray(ids)) return;
  overrides.inForce = ids.filter((id) => typeof id === 'string');
  let dropped = false;
  for (const id of [...overrides.active.keys()]) {
    if (!overrides.inForce.includes(id)) dropped = overrides.active.delete(id);
  }
  if (dropped) {
    save();
    draw();
  }
}

// onOverrideClear ends one.
export function onOverrideClear(m) {
  if (m && overrides.active.delete(m.id)) {
    save();
    draw();
  }
}

// dropOverrides forgets every override (the device was forgotten: revoked).
export function dropOverrides() {
  overrides.active.clear();
  overrides.inForce = null;
  save();
  draw();
}

function save() {
  kvPut('overrides', [...overrides.active.values()]).catch(() => {});
}

// draw shows the active overrides, newest on top (the others below it), or removes
// the layer when none is left. Offline it drops the expired ones by the tablet's clock;
// on a live socket the server says when one ends (override_clear), so a tablet whose
// clock runs ahead does not end an emergency early.
function draw() {
  clearTimeout(overrides.timer);
  overrides.timer = null;
  const t = now();
  const live = conn.ws !== null && conn.welcomedAt > 0;
  let dropped = false;
  for (const [id, o] of overrides.active) {
    if (!live && Date.parse(o.expires_at) <= t) {
      overrides.active.delete(id);
      dropped = true;
    }
  }
  if (dropped) save();
  const list = [...overrides.active.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  let layer = document.getElementById('override');
  if (!list.length) {
    layer?.remove();
    delete document.body.dataset.override;
    return;
  }
  // Look again at the next expiry, and every 5 s while one past it is kept (live).
  const ends = list.map((o) => Date.parse(o.expires_at));
  const wait = ends.some((e) => e <= t) ? 5000 : Math.min(...ends) - t + 50;
  overrides.timer = setTimeout(draw, Math.min(wait, 2 ** 31 - 1));
  if (!layer) {
    layer = document.createElement('div');
    layer.id = 'override';
    layer.setAttribute('role', 'alertdialog');
    layer.setAttribute('aria-modal', 'true');
    layer.setAttribute('aria-live', 'assertive');
    document.body.append(layer);
  }
  const top = list[0];
  layer.dataset.level = top.level;
  layer.dataset.ids = list.map((o) => o.id).join(' ');
  layer.setAttribute('aria-labelledby', 'override-heading');
  layer.replaceChildren(band(), card(top, true), ...list.slice(1).map((o) => card(o, false)), band());
  document.body.dataset.override = top.level;
}

function band() {
  const b = document.createElement('div');
  b.className = 'override-band';
  b.setAttribute('aria-hidden', 'true');
  return b;
}

function card(o, main) {
  const el = document.createElement('section');
  el.className = main ? 'override-card main' : 'override-card';
  el.dataset.level = o.level;
  el.dataset.overrideId = o.id;
  const h = document.createElement(main ? 'h1' : 'h2');
  h.className = 'override-heading';
  if (main) h.id = 'override-heading';
  h.textContent = HEADINGS[o.level];
  el.append(h);
  if (o.title) {
    const p = document.createElement('p');
    p.className = 'override-title';
    p.textContent = o.title;
    el.append(p);
  }
  if (o.body) {
    const p = document.createElement('p');
    p.className = 'override-body';
    if (o.body.length > 400) p.classList.add('long');
    p.textContent = o.body;
    el.append(p);
  }
  return el;
}
