// Screen schedules (docs/protocol.md §5 #ws-schedule, §6 #schedule-format): outside its
// feed's awake hours the tablet sleeps. It evaluates the schedule itself, once a
// second, from its own copy (IndexedDB `schedule`), so it sleeps and wakes on time while
// the server is unreachable and after a reload. Asleep, it releases the wake lock and
// covers the feed with a black screen or a dim clock; the socket stays connected and
// events keep being applied, so it wakes showing the newest. Nothing is acknowledged
// while asleep (it is not on screen); at the wake, what is rendered is. An emergency
// override wakes the screen: while one is in force the tablet holds its wake lock and
// the override shows above everything, asleep or not.

import { kvGet, kvPut } from './storage.js';
import { server } from './dpop.js';
import { wake, keepAwake } from './kiosk.js';
import { ackHold, ackRendered } from './ack.js';

const TICK_MS = 1000;
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']; // as Date.getUTCDay
const RANGE_RE = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/;

// sleep is the schedule this tablet follows and what it says now.
export const sleep = {
  spec: null,        // the feed's schedule (the server's JSON), null: always awake
  fromServer: false, // a welcome or schedule message came: the stored copy is older
  asleep: false,     // the asleep view is up
  timer: null,
};

// parseRange reads "HH:MM-HH:MM" as minutes after midnight, or null.
function parseRange(r) {
  const m = typeof r === 'string' && RANGE_RE.exec(r);
  if (!m) return null;
  const start = +m[1] * 60 + +m[2], end = +m[3] * 60 + +m[4];
  if (+m[1] > 23 || +m[2] > 59 || +m[3] > 24 || +m[4] > 59 || (+m[3] === 24 && +m[4] !== 0) || start === end) return null;
  return { start, end };
}

function ranges(list) {
  return Array.isArray(list) ? list.slice(0, 4).map(parseRange).filter(Boolean) : [];
}

const formats = new Map(); // time zone → Intl.DateTimeFormat, at most a few

// wallClock is the date, weekday and minute of the day at ms in zone.
function wallClock(zone, ms) {
  let f = formats.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
    if (formats.size > 8) formats.clear();
    formats.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const y = +p.year, mo = +p.month, d = +p.day;
  return { y, mo, d, minute: (+p.hour % 24) * 60 + +p.minute };
}

// dayOf is a civil date's ranges and whether it is an exception.
function dayOf(spec, y, mo, d) {
  const date = new Date(Date.UTC(y, mo - 1, d));
  const key = date.toISOString().slice(0, 10);
  const exc = spec.exceptions;
  if (exc && typeof exc === 'object' && Object.hasOwn(exc, key)) return { spans: ranges(exc[key]), exception: true };
  return { spans: ranges(spec.week?.[DAYS[date.getUTCDay()]]), exception: false };
}

// awakeAt is schedule.Schedule.Awake (schedule/schedule.go) for the schedule spec at ms:
// the same rules, checked against the same cases (schedule/testdata/cases.json). A
// schedule this browser cannot evaluate (an unknown zone) is awake.
export function awakeAt(spec, ms) {
  let c;
  try {
    c = wallClock(spec.time_zone, ms);
  } catch {
    return true;
  }
  const today = dayOf(spec, c.y, c.mo, c.d);
  if (today.spans.some((r) => c.minute >= r.start && (r.end < r.start || c.minute < r.end))) return true;
  if (today.exception) return false;
  return dayOf(spec, c.y, c.mo, c.d - 1).spans.some((r) => r.end < r.start && c.minute < r.end);
}

function valid(spec) {
  return spec !== null && typeof spec === 'object' && typeof spec.time_zone === 'string' && spec.time_zone.length <= 64;
}

// restoreSchedule follows the stored copy (app.js, at start), unless the server spoke first.
export async function restoreSchedule() {
  ackHold(() => sleep.asleep);
  try {
    const saved = await kvGet('schedule');
    if (!sleep.fromServer && valid(saved)) sleep.spec = saved;
  } catch { /* no storage: only the server's copy counts */ }
  tick();
}

// onSchedule takes the welcome's "schedule" or a schedule message's: the feed's schedule,
// or null for none.
export function onSchedule(spec) {
  sleep.fromServer = true;
  sleep.spec = valid(spec) ? spec : null;
  kvPut('schedule', sleep.spec).catch(() => {});
  tick();
}

function now() {
  return Date.now() + server.clockOffsetMs;
}

// tick puts the asleep view up or down, and looks again in a second.
function tick() {
  clearTimeout(sleep.timer);
  sleep.timer = setTimeout(tick, TICK_MS);
  const t = now();
  const asleep = !!sleep.spec && document.body.dataset.view === 'feed' && !awakeAt(sleep.spec, t);
  const emergency = !!document.body.dataset.override;
  if (asleep && !emergency) {
    wake.suspended = true;
    wake.lock?.release().catch(() => {});
  } else if (wake.suspended) {
    wake.suspended = false;
    keepAwake();
  }
  if (asleep) draw(t);
  if (asleep === sleep.asleep) return;
  sleep.asleep = asleep;
  if (!asleep) {
    document.getElementById('asleep')?.remove();
    delete document.body.dataset.asleep;
    ackRendered(); // what the feed shows now is on screen
  }
}

// draw shows the asleep view: black, or a dim clock of the schedule's zone.
function draw(t) {
  const view = sleep.spec.asleep_view === 'clock' ? 'clock' : 'black';
  let layer = document.getElementById('asleep');
  if (!layer) {
    layer = document.createElement('div');
    layer.id = 'asleep';
    layer.setAttribute('aria-hidden', 'true');
    document.body.append(layer);
  }
  document.body.dataset.asleep = view;
  layer.dataset.view = view;
  if (view !== 'clock') {
    layer.replaceChildren();
    return;
  }
  let clock = layer.firstElementChild;
  if (!clock) {
    clock = document.createElement('p');
    clock.className = 'asleep-clock';
    layer.append(clock);
  }
  let hhmm = '';
  try {
    const c = wallClock(sleep.spec.time_zone, t);
    hhmm = String(Math.floor(c.minute / 60)).padStart(2, '0') + ':' + String(c.minute % 60).padStart(2, '0');
  } catch { /* no clock for a zone this browser does not know */ }
  if (clock.textContent !== hhmm) clock.textContent = hhmm;
}
