package httpx

import "net/http"

// HandlerFunc is a handler that returns its error instead of writing it: ServeHTTP
// answers a non-nil error with WriteError, so a handler says `return err` where it
// would otherwise say `WriteError(w, err); return`. A handler that has already written
// its answer returns nil.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP runs h and answers its error in the format of docs/protocol.md §1.
func (h HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		WriteError(w, err)
	}
}
