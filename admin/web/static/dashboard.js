// kioskfeed admin dashboard: small progressive enhancements. Every page works without it.
'use strict';

// Ask before destructive forms (data-confirm on the form or its button holds the
// question).
document.addEventListener('submit', (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = (ev.submitter && ev.submitter.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) ev.preventDefault();
});

// Selects marked data-autosubmit send their form when changed (the audit filter).
document.addEventListener('change', (ev) => {
  const el = ev.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute('data-autosubmit') && el.form) {
    el.form.requestSubmit();
  }
});

// The live count of connected tablets, every 5 s.
function startLiveCount() {
  const el = document.getElementById('live-count');
  if (!el) return;
  const url = el.dataset.liveUrl || '/admin/live';
  const refresh = async () => {
    try {
      const resp = await fetch(url, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
      if (resp.ok) {
        const body = await resp.json();
        if (typeof body.online === 'number') el.textContent = String(body.online);
        el.classList.remove('stale');
      } else {
        el.classList.add('stale');
      }
    } catch (e) {
      el.classList.add('stale');
    }
  };
  setInterval(refresh, 5000);
}

// The PIN's countdown: "Expires in m:ss", then "PIN expired". Without script the page
// prints the expiry time instead.
function startCountdown() {
  const el = document.getElementById('pin-countdown');
  if (!el || !el.dataset.expiresAt) return;
  const expires = Date.parse(el.dataset.expiresAt);
  if (Number.isNaN(expires)) return;
  const label = el.parentElement;
  let timer = 0;
  const tick = () => {
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    if (left === 0) {
      el.textContent = 'expired';
      el.classList.add('expired');
      if (label && label.firstChild && label.firstChild.nodeType === Node.TEXT_NODE) label.firstChild.textContent = 'PIN ';
      clearInterval(timer);
      return;
    }
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, '0');
    el.textContent = m + ':' + s;
  };
  if (label && label.firstChild && label.firstChild.nodeType === Node.TEXT_NODE) label.firstChild.textContent = 'Expires in ';
  tick();
  timer = setInterval(tick, 1000);
}

// The overrides page: each override's count and its screens' rows, every 3 s, from the
// admin API (which takes the dashboard's session). One that ended meanwhile says so.
function startOverrideRefresh() {
  if (!document.querySelector('article[data-override-id]')) return;
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
  };
  const refresh = async () => {
    let list;
    try {
      const resp = await fetch('/api/admin/overrides', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!resp.ok) return;
      list = await resp.json();
    } catch (e) {
      return;
    }
    if (!Array.isArray(list)) return;
    const byId = new Map(list.map((o) => [o.id, o]));
    for (const art of document.querySelectorAll('article[data-override-id]')) {
      const o = byId.get(art.dataset.overrideId);
      const count = art.querySelector('.override-shown');
      if (!o) {
        art.classList.add('ended');
        if (count) count.textContent = 'ended';
        continue;
      }
      if (count) {
        count.textContent = o.shown + ' of ' + o.devices;
        count.dataset.shown = String(o.shown);
        count.dataset.devices = String(o.devices);
      }
      for (const sc of o.screens || []) {
        const row = art.querySelector('tr[data-device-id="' + CSS.escape(String(sc.device_id)) + '"]');
        if (!row) continue;
        row.querySelector('.shown-cell').textContent = sc.shown_at ? 'since ' + when(sc.shown_at) : 'not yet';
        row.querySelector('.online-cell').textContent = sc.online ? 'online' : 'offline';
        row.querySelector('.seen-cell').textContent = sc.last_seen ? when(sc.last_seen) : 'never';
      }
    }
  };
  setInterval(refresh, 3000);
}

startLiveCount();
startCountdown();
startOverrideRefresh();

// The devices' last-hour bars, drawn again every 30 s from one request per 500 rows
// (GET /api/admin/timelines?ids=…), never one per row.
function startTimelineRefresh() {
  const legend = document.getElementById('timeline-legend');
  if (!legend) return;
  const url = legend.dataset.timelinesUrl;
  const svgNS = 'http://www.w3.org/2000/svg';
  const hhmmss = (t) => new Date(t).toISOString().slice(11, 19);
  const draw = (svg, tl) => {
    const from = Date.parse(tl.from);
    const rects = [];
    const parts = [];
    for (const s of tl.spans || []) {
      const a = Date.parse(s.from), b = Date.parse(s.to);
      const r = document.createElementNS(svgNS, 'rect');
      r.setAttribute('class', 'tl-' + s.state + (s.flaps ? ' tl-flapping' : ''));
      // Whole seconds from the hour's start, each edge rounded alike (as the server
      // draws it): the rects tile the bar.
      const x = Math.round((a - from) / 1000), end = Math.round((b - from) / 1000);
      r.setAttribute('x', String(x));
      r.setAttribute('y', '0');
      r.setAttribute('width', String(Math.max(1, end - x)));
      r.setAttribute('height', '1');
      const title = document.createElementNS(svgNS, 'title');
      title.textContent = s.state + ' ' + hhmmss(a) + '–' + hhmmss(b) + ' UTC' + (s.flaps ? ', ' + s.flaps + ' short changes' : '');
      r.appendChild(title);
      rects.push(r);
      const mins = (b - a) / 60000;
      parts.push(s.state + ' ' + (mins < 1 ? Math.floor((b - a) / 1000) + ' s' : Math.round(mins) + ' min') + (s.flaps ? ' (' + s.flaps + ' short changes)' : ''));
    }
    svg.replaceChildren(...rects);
    svg.setAttribute('aria-label', 'last hour: ' + parts.join(', '));
  };
  const refresh = async () => {
    const rows = Array.from(document.querySelectorAll('tr[data-device-id]')).filter((r) => r.querySelector('svg.tl'));
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const ids = chunk.map((r) => r.dataset.deviceId).join(',');
      try {
        const resp = await fetch(url + '?ids=' + encodeURIComponent(ids), { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
        if (!resp.ok) return;
        const body = await resp.json();
        const byId = new Map((body.timelines || []).map((t) => [t.device_id, t]));
        for (const row of chunk) {
          const tl = byId.get(row.dataset.deviceId);
          if (tl) draw(row.querySelector('svg.tl'), tl);
        }
      } catch (e) {
        return; // offline for a moment: the bars stay as they are
      }
    }
  };
  setInterval(refresh, 30000);
}

startTimelineRefresh();
