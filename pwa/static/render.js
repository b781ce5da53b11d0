// Rendering: the feed screen drawn from the view, the status badge, and which screen
// shows. Feed content only ever reaches the page as textContent.

import { feed, MAX_ITEMS } from './view.js';
import { ackRendered } from './ack.js';

const MAX_FIT_LEVEL = 8; // app.css has a --scale for data-fit 0..8
const STATUS_TEXT = { live: 'Live', stale: 'Not live', connecting: 'Connecting' };

// screen is what is on the screen now.
export const screen = {
  hasShown: false,     // something real is on screen (restored or synced once)
  renderQueued: false,
  freshSeq: 0,         // newest item already highlighted
};

export function $(id) {
  return document.getElementById(id);
}

export function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// text is what of a feed value may be shown: strings and numbers, nothing else.
export function text(v) {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

export function showView(name) {
  document.body.dataset.view = name;
  if (name === 'feed') scheduleRender();
}

export function setStatus(state) {
  $('status').dataset.state = state;
  $('status-text').textContent = STATUS_TEXT[state];
}

// showNotLive: "stale" when an older screen is showing, "connecting" right after pairing.
export function showNotLive() {
  setStatus(screen.hasShown ? 'stale' : 'connecting');
}

// scheduleRender draws once per frame, so a reset and the state after it (separate
// messages) never show the blank screen in between.
export function scheduleRender() {
  if (!screen.renderQueued) {
    screen.renderQueued = true;
    requestAnimationFrame(render);
  }
}

// render draws from data with textContent only: feed content is never parsed as HTML.
function render() {
  screen.renderQueued = false;
  const view = feed.view;
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
  if (feed.synced && newest > screen.freshSeq) $('items').firstChild.classList.add('fresh');
  screen.freshSeq = Math.max(screen.freshSeq, newest);

  fit();
  ackRendered(); // what the socket sent so far is on screen
}

function li(content) {
  const el = document.createElement('li');
  el.textContent = content;
  return el;
}

// fit steps the type down until the panel fits the screen: nothing may scroll on a
// wall tablet. Items are exempt; the oldest simply fall off the bottom.
function fit() {
  const screenEl = $('feed-screen');
  if (document.body.dataset.view !== 'feed') return;
  const panel = screenEl.querySelector('.panel');
  const overflows = () => panel.scrollHeight > panel.clientHeight + 1 || panel.scrollWidth > panel.clientWidth + 1 ||
    screenEl.scrollHeight > screenEl.clientHeight + 1;
  let level = 0;
  screenEl.dataset.fit = '0';
  while (level < MAX_FIT_LEVEL && overflows()) screenEl.dataset.fit = String(++level);
}
