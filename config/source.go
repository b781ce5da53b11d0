package config

import "strconv"

// sourceKind says which layer of Load set a value.
type sourceKind int

const (
	fromDefault sourceKind = iota // Default, or set in code
	fromFile
	fromEnv
	fromFlag
	fromListen // public_url's default, given listen's port (publicURLFollowsListen)
)

// origin records where Load found one setting's value.
type origin struct {
	kind sourceKind
	path string // the config file, for fromFile
	raw  string // the value as written there, so messages quote the operator's spelling
	val  string // field.canonical at load time; a different value was set in code since
}

// originOf is where c's current value for f came from: what Load recorded, unless the
// value was changed in code since, in which case it has no source to name.
func (c *Config) originOf(f field) (origin, bool) {
	o, ok := c.sources[f.key]
	if !ok || o.val != f.canonical(c) {
		return origin{}, false
	}
	return o, true
}

// sourceName is the source as WriteEffective prints it.
func (o origin) sourceName(f field) string {
	switch o.kind {
	case fromFile:
		return "file " + o.path
	case fromEnv:
		return "env " + f.env()
	case fromFlag:
		return "flag --" + f.flag()
	case fromListen:
		return "default, with the port of listen"
	}
	return "default"
}

// subject names a setting and its value at the start of a message, in the spelling of
// the source that set it: `KIOSKFEED_LISTEN "abc"`, `--listen "abc"`,
// `listen in /etc/kf.yaml "abc"` or `listen "abc"`. shown is the value to quote.
func (o origin) subject(f field, shown string) string {
	q := strconv.Quote(shown)
	switch o.kind {
	case fromFile:
		return f.key + " in " + o.path + " " + q
	case fromEnv:
		return f.env() + " " + q
	case fromFlag:
		return "--" + f.flag() + " " + q
	}
	return f.key + " " + q
}

// secretSubject names a secret setting and its source without its value:
// `admin_token (KIOSKFEED_ADMIN_TOKEN)`.
func (o origin) secretSubject(f field) string {
	switch o.kind {
	case fromFile:
		return f.key + " (in " + o.path + ")"
	case fromEnv:
		return f.key + " (" + f.env() + ")"
	case fromFlag:
		return f.key + " (--" + f.flag() + ")"
	}
	return f.key
}
