package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authenticated reports whether r carries the sandbox's Basic credentials or
// its bearer token. Nothing about the received credential leaves this
// function: callers only learn yes or no.
func authenticated(r *http.Request) bool {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		// Both halves are always compared so that timing does not reveal
		// which one was wrong.
		userOK := secretEqual(user, APIKey)
		passOK := secretEqual(pass, APISecret)
		return ok && userOK && passOK
	case strings.EqualFold(scheme, "Bearer"):
		return secretEqual(strings.TrimSpace(token), BearerToken)
	default:
		return false
	}
}

// secretEqual compares in constant time. Hashing first makes the comparison
// independent of the received value's length too, which
// subtle.ConstantTimeCompare alone would leak.
func secretEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
