package jsonx

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Object is one JSON object read member by member, without reflection: each member's
// name and the raw bytes of its value, in order. It reads what StrictObject reads, and
// Get finds what StrictObject's map holds (of duplicate names, the last), so that the
// token and proof parsers could move to it without a change of verdict (issue 15: the
// map and the reflection around it cost a handshake some 130 allocations).
// object_test.go and a fuzz target compare the two on every input. The zero value is
// ready; an Object keeps up to inlineMembers members without allocating.
type Object struct {
	inline [inlineMembers]member
	n      int      // members in inline
	extra  []member // members past inlineMembers
}

// inlineMembers is how many members an Object holds before it allocates: a DPoP proof's
// header and claims and an access token's claims have at most 9.
const inlineMembers = 12

type member struct {
	name  []byte // unescaped
	value []byte // raw, as json.RawMessage would hold it
}

var errNotObject = errors.New("not an object")

// Parse reads data, which must be one JSON object and nothing but white space after
// it. The members' bytes point into data (names with escapes are copies).
func (o *Object) Parse(data []byte) error {
	o.n, o.extra = 0, o.extra[:0]
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		if !json.Valid(data) {
			return errors.New("invalid JSON")
		}
		return errNotObject // null, an array, a string, a number or a literal
	}
	// One pass reads the members and checks the grammar as encoding/json's scanner
	// does (valid.go, compared with json.Valid on every input by a fuzz target).
	end, ok := o.object(data, i)
	if !ok || skipSpace(data, end) != len(data) {
		return errors.New("invalid JSON")
	}
	return nil
}

// object reads the top-level object at data[i] ('{') into o and returns the index
// just past it.
func (o *Object) object(data []byte, i int) (int, bool) {
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, false
		}
		end, ok := validString(data, i)
		if !ok {
			return 0, false
		}
		name := data[i+1 : end-1]
		if needsUnquote(name) {
			var s string
			if err := json.Unmarshal(data[i:end], &s); err != nil {
				return 0, false
			}
			name = []byte(s)
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return 0, false
		}
		i = skipSpace(data, i+1)
		vEnd, ok := validValue(data, i, 2)
		if !ok {
			return 0, false
		}
		o.add(member{name: name, value: data[i:vEnd]})
		i = skipSpace(data, vEnd)
		if i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case '}':
			return i + 1, true
		case ',':
			i = skipSpace(data, i+1)
		default:
			return 0, false
		}
	}
}

// add appends m; an Object never points into itself, so that it can stay on its
// caller's stack.
func (o *Object) add(m member) {
	if o.n < len(o.inline) {
		o.inline[o.n] = m
		o.n++
		return
	}
	o.extra = append(o.extra, m)
}

// Get is the raw value of the last member called name.
func (o *Object) Get(name string) ([]byte, bool) {
	for k := len(o.extra) - 1; k >= 0; k-- {
		if string(o.extra[k].name) == name {
			return o.extra[k].value, true
		}
	}
	for k := o.n - 1; k >= 0; k-- {
		if string(o.inline[k].name) == name {
			return o.inline[k].value, true
		}
	}
	return nil, false
}

// Each calls fn with every member in order, duplicates included, until fn returns
// false; it reports whether fn never did.
func (o *Object) Each(fn func(name, value []byte) bool) bool {
	for _, m := range o.inline[:o.n] {
		if !fn(m.name, m.value) {
			return false
		}
	}
	for _, m := range o.extra {
		if !fn(m.name, m.value) {
			return false
		}
	}
	return true
}

// Has reports whether the object has a member called name.
func (o *Object) Has(name string) bool {
	_, ok := o.Get(name)
	return ok
}

// String is StringMember for an Object: the member's value when it is a JSON string.
func (o *Object) String(name string) (string, bool) {
	raw, ok := o.Get(name)
	if !ok {
		return "", false
	}
	return String(raw)
}

// Len is the number of members, duplicates counted.
func (o *Object) Len() int { return o.n + len(o.extra) }

// String decodes raw, a value of a parsed Object, when it is a JSON string, as
// json.Unmarshal into a string would: escapes resolved, invalid UTF-8 replaced. A
// string without escapes and in valid UTF-8 is its own bytes, with no decoder.
func String(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if body := raw[1 : len(raw)-1]; !needsUnquote(body) {
		return string(body), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// needsUnquote reports whether a JSON string's body differs from its decoded value:
// an escape, or bytes that are not ASCII (invalid UTF-8 is replaced on decoding).
func needsUnquote(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
