// Package config owns kioskfeed's one Config: every setting of the binary in one
// struct, its defaults, and where each value may come from.
//
// A setting has one name in three spellings, so an operator who knows one knows them
// all: the YAML key in the config file (public_url), the environment variable
// (KIOSKFEED_PUBLIC_URL) and the flag (--public-url). Later sources win:
// defaults < file < environment < flags. Load remembers which source gave each value,
// so Validate and WriteEffective can say where a wrong value came from and what would
// be right, without ever printing a secret.
//
// The settings are driven by the struct tags of Config, so adding a setting is one
// field with a doc comment (and, if it has constraints, one rule in Validate).
//
// config must not import any other kioskfeed package: every other package depends on
// it (through cmd/kioskfeed), never the other way around. It holds no package-level
// state; the environment comes in as a lookup function, so tests never touch the
// process environment.
package config
