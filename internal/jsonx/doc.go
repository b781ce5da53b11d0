// Package jsonx holds the two JSON helpers the token and proof parsers share: they read
// a compact JWS's header and claims member by member, refusing anything that is not
// the JSON type they expect, before any library sees it. It must not grow into a JSON
// library: only what both parsers need.
package jsonx
