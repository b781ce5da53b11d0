package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// kind is how a setting is spelled as text.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindDuration
	kindList
)

// field describes one setting, read from Config's struct tags.
type field struct {
	index  int    // index of the struct field in Config
	key    string // YAML key, such as public_url
	kind   kind
	def    string // default, in the same spelling as an env value
	usage  string
	secret bool
}

// fields lists Config's settings in declaration order. It is computed on each call
// rather than kept in a package variable: the package holds no state, and the cost is
// nothing next to starting a server.
func fields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		key, ok := sf.Tag.Lookup("key")
		if !ok {
			continue
		}
		f := field{
			index:  i,
			key:    key,
			def:    sf.Tag.Get("default"),
			usage:  sf.Tag.Get("usage"),
			secret: sf.Tag.Get("secret") == "true",
		}
		switch {
		case sf.Type == reflect.TypeFor[time.Duration]():
			f.kind = kindDuration
		case sf.Type.Kind() == reflect.String:
			f.kind = kindString
		case sf.Type.Kind() == reflect.Int:
			f.kind = kindInt
		case sf.Type.Kind() == reflect.Bool:
			f.kind = kindBool
		case sf.Type == reflect.TypeFor[[]string]():
			f.kind = kindList
		default:
			panic("config: field " + sf.Name + " has unsupported type " + sf.Type.String())
		}
		out = append(out, f)
	}
	return out
}

// env is the setting's environment variable.
func (f field) env() string { return "KIOSKFEED_" + strings.ToUpper(f.key) }

// flag is the setting's flag name, without dashes in front.
func (f field) flag() string { return strings.ReplaceAll(f.key, "_", "-") }

// value is the settable struct field of c that holds the setting.
func (f field) value(c *Config) reflect.Value { return reflect.ValueOf(c).Elem().Field(f.index) }

// parse turns an env or flag spelling into a value of the field's type. Its error says
// only what would be right; the caller names the source and the value.
func (f field) parse(raw string) (reflect.Value, error) {
	switch f.kind {
	case kindString:
		return reflect.ValueOf(raw), nil
	case kindInt:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("want an integer such as %s", f.example())
		}
		return reflect.ValueOf(n), nil
	case kindBool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return reflect.Value{}, errors.New("want true or false")
		}
		return reflect.ValueOf(b), nil
	case kindDuration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("want a Go duration such as %s", f.example())
		}
		return reflect.ValueOf(d), nil
	case kindList:
		return reflect.ValueOf(splitList(raw)), nil
	}
	panic("config: unknown kind")
}

// example is a value to suggest in a parse error: the default, unless that is zero.
func (f field) example() string {
	switch {
	case f.kind == kindDuration && f.def == "0s":
		return "1h"
	case f.def == "":
		return "1"
	}
	return f.def
}

// splitList reads a comma-separated list, dropping blanks around and between items, so
// that an empty string is an empty (nil) list.
func splitList(raw string) []string {
	var out []string
	for item := range strings.SplitSeq(raw, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// normalize applies the one rewrite Load makes to a value: public_url loses one
// trailing "/", so that other packages can append paths to it.
func (f field) normalize(v reflect.Value) reflect.Value {
	if f.key == "public_url" {
		return reflect.ValueOf(strings.TrimSuffix(v.String(), "/"))
	}
	return v
}

// format spells the setting's current value in c as a person would write it (a list
// joined with commas). Callers must mask secrets themselves.
func (f field) format(c *Config) string {
	v := f.value(c)
	switch f.kind {
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindDuration:
		return formatDuration(time.Duration(v.Int()))
	case kindList:
		return strings.Join(v.Interface().([]string), ",")
	}
	return v.String()
}

// canonical spells the value exactly, so that Validate can tell whether it is still
// the one Load recorded.
func (f field) canonical(c *Config) string {
	if f.kind == kindList {
		return fmt.Sprintf("%q", f.value(c).Interface())
	}
	return f.format(c)
}

// formatDuration writes d without the zero units time.Duration.String adds ("10m"
// rather than "10m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// secretDisplay is how a secret appears anywhere it is shown.
func secretDisplay(set bool) string {
	if set {
		return "****"
	}
	return ""
}

// maskUserinfo hides any user name and password in a URL or comma-separated list of
// URLs, so that nats://user:pass@host can be shown in messages. It works on the text,
// not on a parse, so that a URL too broken to parse is masked too.
func maskUserinfo(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			// Without a scheme, anything before an '@' may still be a credential.
			if at := strings.LastIndex(p, "@"); at >= 0 {
				parts[i] = "****" + p[at:]
			}
			continue
		}
		authority, path := rest, ""
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			authority, path = rest[:j], rest[j:]
		}
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			parts[i] = scheme + "://****" + authority[at:] + path
		}
	}
	return strings.Join(parts, ",")
}
