// Package pwa owns the tablet app: its manifest, service worker, JavaScript, CSS and
// icons, embedded with //go:embed and served with content-hashed URLs and a strict
// Content-Security-Policy.
//
// It must not hold any secret or per-device value in a URL or file: a tablet's only
// credential is its non-extractable WebCrypto key. It imports nothing of ours but
// internal/httpx (for its 404s), never broker, bridge or pairing: the app meets them
// only through the wire contract, docs/protocol.md.
//
// Everything served is computed once in New: static/ files are hashed into their
// /assets/ names, the icons are drawn in Go, and the pages (templates/) and the service
// worker are rendered with those names.
//
// The app itself is plain ES modules, static/*.js, with no build step and no import
// map: app.js is the entry, and each concern is one module with one exported state
// object (app.js lists them). Modules import each other only as './name.js'. New names
// every module /assets/<name>.<hash>.js with one hash of all module sources together
// and rewrites each './name.js' specifier to that name (modules.go says why one hash
// for the set and not one per file: the imports form cycles). New refuses anything else
// an import could name (a bare name, an absolute or external URL, a dynamic import()),
// and a module that the entry does not reach. The page preloads every module
// (rel=modulepreload), the service worker precaches them with the other assets, and an
// old build's hashed name is a 404, like any unknown asset. The Content-Security-Policy
// needs nothing for this: script-src 'self' covers same-origin modules.
package pwa
