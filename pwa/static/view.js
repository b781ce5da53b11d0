// The view: what the screen shows, as data. It is the newest state event (if any) and
// the items after it, oldest first, with the seq and epoch to resume from, and it is
// stored as `view` so that a restart shows it at once and resumes exactly.

import { auth } from './device.js';
import { kvPut } from './storage.js';
import { isObject, scheduleRender } from './render.js';

export const MAX_ITEMS = 20;
const SAVE_DELAY_MS = 500;

export function emptyView() {
  return { events: [], lastSeq: 0, epoch: '' };
}

// feed is the view and its bookkeeping.
export const feed = {
  view: emptyView(),
  saveTimer: null,
  synced: false, // the current socket has caught up: what the view shows is live
};

export function applyEvent(m) {
  const view = feed.view;
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
export function saveSoon() {
  feed.saveTimer ??= setTimeout(saveView, SAVE_DELAY_MS);
}

export function saveView() {
  clearTimeout(feed.saveTimer);
  feed.saveTimer = null;
  if (!auth.device) return;
  const view = feed.view;
  kvPut('view', { events: view.events, lastSeq: view.lastSeq, epoch: view.epoch, feed: view.feed }).catch(() => {});
}

// validView checks a view read back from storage.
export function validView(v) {
  return isObject(v) && Array.isArray(v.events) && Number.isSafeInteger(v.lastSeq) &&
    v.events.every((e) => isObject(e) && Number.isSafeInteger(e.seq) && typeof e.kind === 'string' && isObject(e.data));
}
