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

startLiveCount();
startCountdown();
