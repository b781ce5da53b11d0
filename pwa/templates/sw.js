// kioskfeed service worker: keeps the app shell on the tablet so that a restart with
// no network still shows the last state at once. It never touches the API or the
// socket: those must always reach the server (and a cached answer would be wrong).

// Both filled in by the server from the build's content hashes: a new build is a new
// VERSION, hence a new worker that replaces the old cache.
const VERSION = {{.Version}};
const PRECACHE = {{.Precache}};

// The pages of the app; other pages of the origin (the admin dashboard) are not ours.
const PAGES = new Set(['/', '/help']);

// How long a navigation waits for the network before the cached shell is shown.
const NAVIGATION_TIMEOUT_MS = 4000;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(VERSION);
    // cache: 'reload' skips the HTTP cache so the shell is this build's, not a stale copy.
    await cache.addAll(PRECACHE.map((url) => new Request(url, { cache: 'reload' })));
    // A kiosk never closes its tab, so waiting for it would mean never updating.
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key !== VERSION) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/api/') || url.pathname === '/ws') return;
  if (req.mode === 'navigate') {
    if (PAGES.has(url.pathname)) event.respondWith(networkFirst(req, url.pathname));
    return;
  }
  if (url.pathname.startsWith('/assets/')) event.respondWith(cacheFirst(req));
});

// networkFirst serves the page from the network when it answers in time, and keeps that
// copy; otherwise the cached shell, so a tablet restarting offline still starts.
async function networkFirst(req, path) {
  const cache = await caches.open(VERSION);
  const cached = await cache.match(path);
  const network = fetch(req).then((res) => {
    if (res.ok) {
      cache.put(path, res.clone()).catch(() => {});
      return res;
    }
    // A proxy's error page while the server restarts is worse than the shell.
    if (cached) throw new Error('HTTP ' + res.status);
    return res;
  });
  if (!cached) return network;
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve(cached), NAVIGATION_TIMEOUT_MS); });
  try {
    return await Promise.race([network, late]);
  } catch {
    return cached;
  } finally {
    clearTimeout(timer);
  }
}

// cacheFirst fits hashed assets: a name's bytes never change.
async function cacheFirst(req) {
  const cache = await caches.open(VERSION);
  const hit = await cache.match(req);
  if (hit) return hit;
  const res = await fetch(req);
  if (res.ok) cache.put(req, res.clone()).catch(() => {});
  return res;
}
