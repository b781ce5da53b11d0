// The kiosk: the screen stays awake and untouchable, and a new build reaches the tablet
// through the service worker without a person.

import { feed, saveView } from './view.js';
import { scheduleRender } from './render.js';

const SW_UPDATE_MS = 6 * 60 * 60 * 1000;

// wake is the screen Wake Lock this page holds.
export const wake = {
  lock: null,
  pending: false, // a request is in flight
  suspended: false, // the screen is scheduled asleep (schedule.js): ask for no lock
};

// keepAwake holds a screen Wake Lock while visible. The browser drops it whenever
// the page is hidden, so visibilitychange asks again; a refusal (battery saver, no
// user gesture yet) is retried on the next touch.
export async function keepAwake() {
  if (wake.lock || wake.pending || wake.suspended || !navigator.wakeLock || document.visibilityState !== 'visible') return;
  wake.pending = true;
  try {
    const lock = await navigator.wakeLock.request('screen');
    lock.addEventListener('release', () => { if (wake.lock === lock) wake.lock = null; });
    wake.lock = lock;
  } catch { /* refused: see above */ } finally {
    wake.pending = false;
  }
}

const inField = (t) => !!(t instanceof Element ? t : t?.parentElement)?.closest('input, textarea');

export function installKioskGuards() {
  // No menus, selections, drags or pinches: visitors cannot do anything to the screen.
  for (const type of ['contextmenu', 'selectstart', 'dragstart', 'gesturestart']) {
    document.addEventListener(type, (e) => { if (!inField(e.target)) e.preventDefault(); }, { passive: false });
  }
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') keepAwake();
    else if (feed.saveTimer) saveView(); // the tab may be frozen or killed next
  });
  document.addEventListener('pointerdown', keepAwake, { passive: true });
  window.addEventListener('resize', scheduleRender);
}

export function registerServiceWorker() {
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
