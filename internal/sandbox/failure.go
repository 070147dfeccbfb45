package sandbox

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// failure is the upstream's error envelope ("Failure" in the specification).
type failure struct {
	Errors []apiError `json:"errors"`
}

// apiError is one entry of a failure. The specification also allows
// error_code and message; the sandbox never sends them, so they are not
// modelled.
type apiError struct {
	ID     string       `json:"id,omitempty"`
	Status string       `json:"status,omitempty"`
	Code   string       `json:"code,omitempty"`
	Title  string       `json:"title,omitempty"`
	Detail string       `json:"detail,omitempty"`
	Source *errorSource `json:"source,omitempty"`
}

// errorSource points at the part of the request that caused an error.
type errorSource struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
}

// writeFailure sends e as the only error of a failure, with a fresh id and
// the status expressed as a string, as the upstream does.
func writeFailure(w http.ResponseWriter, status int, e apiError) {
	e.ID = newUUID()
	e.Status = strconv.Itoa(status)
	writeJSON(w, status, failure{Errors: []apiError{e}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only reachable through a programming error in the seed types.
		status = http.StatusInternalServerError
		body = []byte(`{"errors":[{"status":"500","title":"Internal Server Error"}]}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// newUUID returns a random version 4 UUID, the shape of the upstream's
// request and error ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24; it aborts instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
