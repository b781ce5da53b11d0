// Package pwa owns the tablet app: its manifest, service worker, JavaScript, CSS and
// icons, embedded with //go:embed and served with content-hashed URLs and a strict
// Content-Security-Policy.
//
// It must not hold any secret or per-device value in a URL or file: a tablet's only
// credential is its non-extractable WebCrypto key.
//
// Everything served is computed once in New: static/ files are hashed into their
// /assets/ names, the icons are drawn in Go, and the pages (templates/) and the service
// worker are rendered with those names. The app itself is static/app.js, one plain ES
// module with no build step.
package pwa
