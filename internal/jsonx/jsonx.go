package jsonx

import (
	"encoding/json"
	"errors"
)

// StrictObject decodes a JSON object (and nothing after it) into dst.
func StrictObject(data []byte, dst *map[string]json.RawMessage) error {
	if err := json.Unmarshal(data, dst); err != nil {
		return err
	}
	if *dst == nil {
		return errors.New("not an object")
	}
	return nil
}

// StringMember returns m[name] when it is a JSON string.
func StringMember(m map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := m[name]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
