// Package pwa will own the tablet app: its manifest, service worker, JavaScript, CSS and
// icons, embedded with //go:embed and served with content-hashed URLs and a strict
// Content-Security-Policy.
//
// It must not hold any secret or per-device value in a URL or file: a tablet's only
// credential is its non-extractable WebCrypto key.
package pwa
