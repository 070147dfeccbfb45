package upstream

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Authorization is a credential for the upstream, sent as its Authorization
// header: HTTP Basic with a Cloud API key and secret, or a Bearer token. Its
// String, GoString and LogValue never reveal the secret part, so it is safe to
// print or log by accident.
type Authorization struct {
	scheme string // "Basic" or "Bearer"
	token  string // the credentials after the scheme
}

// BasicAuth returns the HTTP Basic credential for a Cloud API key and secret.
func BasicAuth(key, secret string) Authorization {
	return Authorization{scheme: "Basic", token: base64.StdEncoding.EncodeToString([]byte(key + ":" + secret))}
}

// ErrMalformedAuthorization is returned by ParseAuthorization. Its message says
// what is wrong without repeating the credential.
var ErrMalformedAuthorization = errors.New(`authorization must be "Basic <base64 key:secret>" or "Bearer <token>"`)

// MaxAuthorizationBytes is the longest Authorization value accepted. Cloud API
// keys make Basic values of about 100 bytes and OAuth access tokens (JWTs) of
// 1-4 KiB; 8 KiB leaves room for a token with many claims, and nobody's
// longer value is sent upstream, hashed or decoded.
const MaxAuthorizationBytes = 8 << 10

// ErrAuthorizationTooLong is returned by ParseAuthorization for a value longer
// than MaxAuthorizationBytes.
var ErrAuthorizationTooLong = fmt.Errorf("authorization is longer than %d bytes", MaxAuthorizationBytes)

// ParseAuthorization reads an Authorization header value such as a caller sends
// ("Basic dXNlcjpwYXNz" or "Bearer eyJ..."). The scheme is matched without
// regard to case, as RFC 9110 says. Values longer than MaxAuthorizationBytes
// are refused before anything else; so are other schemes, empty credentials
// and characters that could not be sent in a header.
//
// Basic credentials are decoded (padded or not, standard or URL alphabet) and
// encoded again in standard padded base64, so that one key and secret is one
// credential, whatever the spelling: the same cache entries, shared
// exchanges, rate-limit window and poll loops.
func ParseAuthorization(v string) (Authorization, error) {
	if len(v) > MaxAuthorizationBytes {
		return Authorization{}, ErrAuthorizationTooLong
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	token = strings.TrimSpace(token)
	if !ok || token == "" || !isToken68(token) {
		return Authorization{}, ErrMalformedAuthorization
	}
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, ok := decodeBase64(token)
		if !ok || !strings.Contains(string(raw), ":") {
			return Authorization{}, ErrMalformedAuthorization
		}
		return Authorization{scheme: "Basic", token: base64.StdEncoding.EncodeToString(raw)}, nil
	case strings.EqualFold(scheme, "Bearer"):
		return Authorization{scheme: "Bearer", token: token}, nil
	default:
		return Authorization{}, ErrMalformedAuthorization
	}
}

// decodeBase64 decodes s in any of the spellings of base64 a client may send:
// standard or URL alphabet, with or without padding, with non-zero unused
// bits (which Go's decoders, not being strict, ignore).
func decodeBase64(s string) ([]byte, bool) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	raw, err := enc.DecodeString(s)
	return raw, err == nil
}

// isToken68 reports whether s uses only the characters of RFC 9110's token68,
// which covers base64 and the usual bearer tokens (JWTs, opaque keys).
func isToken68(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~+/=", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// IsZero reports whether a holds no credential.
func (a Authorization) IsZero() bool { return a.token == "" }

// String returns the scheme and a redaction mark, never the credential.
func (a Authorization) String() string {
	if a.IsZero() {
		return "none"
	}
	return a.scheme + " [redacted]"
}

// GoString keeps %#v from printing the credential.
func (a Authorization) GoString() string { return "upstream.Authorization(" + a.String() + ")" }

// LogValue keeps slog from printing the credential.
func (a Authorization) LogValue() slog.Value { return slog.StringValue(a.String()) }

func (a Authorization) headerValue() string { return a.scheme + " " + a.token }

// Fingerprint identifies the credential without revealing it: a SHA-256 of
// the header value, which ParseAuthorization made canonical. It is the one
// hash of a credential: use it (or credentialID, its hex form) to keep
// per-credential state, such as a rate-limit window, cache entries or a
// shared poll loop, apart.
func (a Authorization) Fingerprint() [32]byte {
	return sha256.Sum256([]byte(a.headerValue()))
}

// credentialID is the credential's Fingerprint in hex, the form the guard's
// store and the request ids use.
func credentialID(a Authorization) string {
	fp := a.Fingerprint()
	return hex.EncodeToString(fp[:])
}
