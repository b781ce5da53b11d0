package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteEffective writes the settings in effect, one `key: value  # source` line each, so
// that an operator can see what a running instance uses and why. Secrets show as
// "****" when set and "" when not; a user name or password inside a URL is masked.
// Sources are default, file <path>, env KIOSKFEED_X and flag --x (and code, for a value
// changed after Load). The lines are valid YAML, so the output (minus the masked
// secrets) can serve as a config file.
func (c Config) WriteEffective(w io.Writer) error {
	var b strings.Builder
	def := Default()
	for _, f := range fields() {
		b.WriteString(f.key)
		b.WriteString(": ")
		b.WriteString(c.yamlValue(f))
		b.WriteString("  # ")
		b.WriteString(c.sourceOf(f, &def))
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write effective config: %w", err)
	}
	return nil
}

// yamlValue spells f's value as YAML: strings quoted, lists in flow style.
func (c *Config) yamlValue(f field) string {
	switch f.kind {
	case kindString:
		s := f.value(c).String()
		switch {
		case f.secret:
			s = secretDisplay(s != "")
		case f.key == "nats_url" || f.key == "public_url":
			s = maskUserinfo(s)
		}
		return strconv.Quote(s)
	case kindList:
		items := f.value(c).Interface().([]string)
		quoted := make([]string, len(items))
		for i, s := range items {
			quoted[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	return f.format(c)
}

// sourceOf names where f's value came from; def is Default(), to tell an untouched
// default from a value set in code.
func (c *Config) sourceOf(f field, def *Config) string {
	if o, ok := c.originOf(f); ok {
		return o.sourceName(f)
	}
	if f.canonical(c) == f.canonical(def) {
		return "default"
	}
	return "code"
}
