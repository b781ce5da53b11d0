// The server's reload message (docs/protocol.md #ws-reload): an administrator asks the
// tablet to reload its app, e.g. after an upgrade. A page loaded because of such a
// message ignores another for RELOAD_GUARD_MS, so that no fault (a message repeated,
// a server sending it on every connect) can keep a screen reloading.

const RELOAD_GUARD_MS = 60_000;
const KEY = 'kioskfeed-reloaded-at';

export function onReload() {
  let last = 0;
  try {
    last = Number(sessionStorage.getItem(KEY)) || 0;
  } catch { /* no storage: no guard to read, reload */ }
  const now = Date.now();
  if (last > 0 && now - last >= 0 && now - last < RELOAD_GUARD_MS) {
    document.documentElement.dataset.reload = 'ignored';
    return;
  }
  try {
    sessionStorage.setItem(KEY, String(now));
  } catch { /* reload anyway */ }
  location.reload();
}
