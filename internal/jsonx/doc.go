// Package jsonx holds the JSON helpers the token and proof parsers share: they read
// a compact JWS's header and claims member by member, refusing anything that is not
// the JSON type they expect, before any library sees it. Object does it without a map
// or reflection on every handshake (issue 15); StrictObject and StringMember are what
// it is checked against, input by input. It must not grow into a JSON library: only
// what both parsers need.
package jsonx
