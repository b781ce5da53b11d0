package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Bearer is the credential of an Authorization: Bearer header, "" when there is none.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ReadJSONBody checks that the request is application/json and reads its body, at most
// limit bytes: past that it stops reading and answers too_large.
func ReadJSONBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, Errorf(CodeUnsupportedMedia, "send Content-Type: application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(CodeTooLarge, "the request body is too large")
		}
		return nil, Errorf(CodeInvalidRequest, "the request body could not be read")
	}
	return body, nil
}

// StrictJSON decodes one JSON object into v, refusing unknown fields with a clear message.
func StrictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidRequest, "body is not valid: "+JSONProblem(err))
	}
	return OnlyWhitespaceLeft(dec)
}

// OnlyWhitespaceLeft refuses anything after the one JSON value. (dec.More is false on a
// stray '}' or ']', so it cannot tell.)
func OnlyWhitespaceLeft(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(CodeInvalidRequest, "body holds more than one JSON value")
	}
	return nil
}

// JSONProblem turns a decoder error into words without Go type names.
func JSONProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "malformed JSON at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%q has the wrong type (want %s)", typ.Field, jsonTypeName(typ.Type.Kind().String()))
		}
		return "want a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case err.Error() == "EOF":
		return "empty body"
	default:
		return "malformed JSON"
	}
}

func jsonTypeName(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	default:
		return k
	}
}
