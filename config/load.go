package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvConfigFile names the YAML config file when --config is not given, so that a
// container can point at its file through the environment alone.
const EnvConfigFile = "KIOSKFEED_CONFIG"

// Load registers every config flag plus --config (path of a YAML file; env
// KIOSKFEED_CONFIG also names it) on fs, parses args with fs, and returns the effective
// Config: defaults < file < env < flags.
//
// The caller may have added its own flags to fs before (such as --demo); fs.Args()
// holds the rest afterwards. A name clash with a config flag panics, as fs.Var does.
// lookupEnv is usually os.LookupEnv; nil means an empty environment. A variable that
// is set to the empty string counts as set, and so does a flag given as --x=, so that
// either can empty a setting whose default is not empty (such as nats_listen).
//
// Load reports values it cannot read (an unknown file key, "soon" for a duration), all
// of them at once; whether the values make sense together is Validate's job. A parse
// error from fs wraps the flag package's error, so errors.Is(err, flag.ErrHelp) works.
func Load(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (Config, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	fl := fields()
	flagValues := make([]flagValue, len(fl))
	for i, f := range fl {
		flagValues[i] = flagValue{raw: f.def, isBool: f.kind == kindBool}
		fs.Var(&flagValues[i], f.flag(), f.flagUsage())
	}
	var configFlag flagValue
	fs.Var(&configFlag, "config", "path of a YAML config `file`; env and flags override it (env "+EnvConfigFile+")")

	if err := fs.Parse(args); err != nil {
		return Config{}, fmt.Errorf("parse flags: %w", err)
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := Default()
	c.sources = make(map[string]origin, len(fl))
	var errs []error

	path, named := "", ""
	if v, ok := lookupEnv(EnvConfigFile); ok {
		path, named = v, EnvConfigFile
	}
	if set["config"] {
		path, named = configFlag.raw, "--config"
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config file named by %s: %w", named, err)
		}
		errs = append(errs, c.applyFile(fl, path, data)...)
	}

	for _, f := range fl {
		if raw, ok := lookupEnv(f.env()); ok {
			errs = append(errs, c.apply(f, origin{kind: fromEnv, raw: raw}))
		}
	}
	for i, f := range fl {
		if set[f.flag()] {
			errs = append(errs, c.apply(f, origin{kind: fromFlag, raw: flagValues[i].raw}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	c.publicURLFollowsListen()
	return c, nil
}

// publicURLFollowsListen gives a public_url that no source set the port of listen, so
// that `--listen :9000` alone still works: the tablet app signs its DPoP proofs for the
// address it was loaded from, and the server checks them against public_url. Port 0 (a
// port chosen at start) and a listen address that is not host:port leave the default
// as it is; Validate reports the latter.
func (c *Config) publicURLFollowsListen() {
	if _, set := c.sources["public_url"]; set {
		return
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil || port == "" || port == "0" {
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return
	}
	def := Default()
	u, err := url.Parse(def.PublicURL)
	if err != nil || u.Port() == port {
		return
	}
	c.PublicURL = u.Scheme + "://" + u.Hostname() + ":" + port
	for _, f := range fields() {
		if f.key == "public_url" {
			c.sources[f.key] = origin{kind: fromListen, val: f.canonical(c)}
		}
	}
}

// apply parses o.raw into f and records o as its source.
func (c *Config) apply(f field, o origin) error {
	v, err := f.parse(o.raw)
	if err != nil {
		return fmt.Errorf("%s: %w", o.subject(f, o.raw), err)
	}
	c.set(f, v, o)
	return nil
}

func (c *Config) set(f field, v reflect.Value, o origin) {
	f.value(c).Set(f.normalize(v))
	o.val = f.canonical(c)
	c.sources[f.key] = o
}

// applyFile reads the settings in a YAML config file. Unknown keys are errors, so that
// a misspelt key cannot silently leave a default in place.
func (c *Config) applyFile(fl []field, path string, data []byte) []error {
	// Decode into a struct with one yaml.Node per key, built from the same tags, so
	// that the decoder's KnownFields check knows every key (and only those), while each
	// value is then read with the same rules as the environment.
	sfs := make([]reflect.StructField, len(fl))
	for i, f := range fl {
		sfs[i] = reflect.StructField{
			Name: fmt.Sprintf("F%d", i),
			Type: reflect.TypeFor[yaml.Node](),
			Tag:  reflect.StructTag(`yaml:"` + f.key + `"`),
		}
	}
	doc := reflect.New(reflect.StructOf(sfs))
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(doc.Interface()); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file, or only comments
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			errs := make([]error, len(te.Errors))
			for i, msg := range te.Errors {
				errs[i] = fmt.Errorf("config file %s: %s", path, explainYAML(msg, fl))
			}
			return errs
		}
		return []error{fmt.Errorf("config file %s: %w", path, err)}
	}
	var rest yaml.Node
	if err := dec.Decode(&rest); !errors.Is(err, io.EOF) {
		return []error{fmt.Errorf("config file %s: want one YAML document, found more", path)}
	}

	// Report problems in the order of the file's lines, as a person reads it.
	type lineError struct {
		line int
		err  error
	}
	var problems []lineError
	for i, f := range fl {
		n := doc.Elem().Field(i).Addr().Interface().(*yaml.Node)
		if n.Kind == 0 {
			continue // key not in the file
		}
		n = resolveAlias(n)
		o := origin{kind: fromFile, path: path}
		var err error
		switch {
		case f.kind == kindList:
			var items []string
			if items, err = listItems(n); err != nil {
				err = fmt.Errorf("%s in %s (line %d): %w", f.key, path, n.Line, err)
				break
			}
			o.raw = strings.Join(items, ",")
			c.set(f, reflect.ValueOf(items), o)
		case n.Kind != yaml.ScalarNode:
			err = fmt.Errorf("%s in %s (line %d): want a single value, not a list or mapping", f.key, path, n.Line)
		default:
			if n.Tag != "!!null" {
				o.raw = n.Value
			}
			err = c.apply(f, o)
		}
		if err != nil {
			problems = append(problems, lineError{n.Line, err})
		}
	}
	slices.SortStableFunc(problems, func(a, b lineError) int { return a.line - b.line })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p.err
	}
	return errs
}

// resolveAlias follows YAML aliases (*name) to the node they stand for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for range 10 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return n
}

// listItems reads a YAML list of strings; null (an empty value) is an empty list.
func listItems(n *yaml.Node) ([]string, error) {
	var items []string
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil, nil
	case n.Kind != yaml.SequenceNode:
		return nil, errors.New("want a YAML list, such as [\"https://kiosk.example.com\"]")
	}
	for _, item := range n.Content {
		item = resolveAlias(item)
		if item.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: want a list of single values", item.Line)
		}
		if s := strings.TrimSpace(item.Value); s != "" && item.Tag != "!!null" {
			items = append(items, s)
		}
	}
	return items, nil
}

// explainYAML rewrites a yaml.v3 type error, which names the decoder's generated struct
// type, into words about the config file.
func explainYAML(msg string, fl []field) string {
	line, rest, ok := strings.Cut(msg, ": ")
	if !ok || !strings.HasPrefix(line, "line ") {
		return msg
	}
	if name, ok := strings.CutPrefix(rest, "field "); ok {
		if key, _, ok := strings.Cut(name, " not found in type "); ok {
			keys := make([]string, len(fl))
			for i, f := range fl {
				keys[i] = f.key
			}
			return fmt.Sprintf("%s: unknown key %q: want one of %s", line, key, strings.Join(keys, ", "))
		}
	}
	if what, ok := strings.CutPrefix(rest, "cannot unmarshal "); ok {
		if found, _, ok := strings.Cut(what, " into struct "); ok {
			return fmt.Sprintf("%s: want a mapping of keys to values, such as \"listen: :8080\", found %s", line, found)
		}
		if found, _, ok := strings.Cut(what, " into string"); ok {
			return fmt.Sprintf("%s: want keys that are plain words, found %s", line, found)
		}
	}
	return msg
}

// flagValue holds a config flag's text until Load parses it, so that a bad flag value
// gets the same message as a bad env value, and --x= counts as set.
type flagValue struct {
	raw    string
	isBool bool
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.raw
}

func (v *flagValue) Set(s string) error {
	v.raw = s
	return nil
}

// IsBoolFlag lets a bool setting be given as a bare --name.
func (v *flagValue) IsBoolFlag() bool { return v.isBool }

// flagUsage is the flag's help line, naming its type and env var.
func (f field) flagUsage() string {
	env := " (env " + f.env() + ")"
	switch f.kind {
	case kindInt:
		return f.usage + "; an `int`" + env
	case kindDuration:
		return f.usage + "; a `duration`" + env
	case kindList:
		return f.usage + "; a `list`" + env
	case kindBool:
		return f.usage + env
	}
	return f.usage + "; a `string`" + env
}
