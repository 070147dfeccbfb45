package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in         string
		wantScheme string
		wantHeader string
		wantErr    bool
	}{
		{in: "Basic S0VZOnMzY3IzdA==", wantScheme: "Basic", wantHeader: "Basic S0VZOnMzY3IzdA=="},
		{in: "basic S0VZOnMzY3IzdA==", wantScheme: "Basic", wantHeader: "Basic S0VZOnMzY3IzdA=="},
		{in: "  Bearer abc.def-ghi_jkl  ", wantScheme: "Bearer", wantHeader: "Bearer abc.def-ghi_jkl"},
		{in: "BEARER t0k3n", wantScheme: "Bearer", wantHeader: "Bearer t0k3n"},
		{in: "", wantErr: true},
		{in: "Basic", wantErr: true},
		{in: "Basic ", wantErr: true},
		{in: "Basic not-base64!", wantErr: true},
		{in: "Basic a2V5", wantErr: true}, // "key": no colon between key and secret
		{in: "Digest username=x", wantErr: true},
		{in: "Bearer two words", wantErr: true},
		{in: "Bearer tok\r\nX-Evil: 1", wantErr: true},
		{in: "S0VZOnMzY3IzdA==", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAuthorization(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedAuthorization) {
					t.Fatalf("err = %v, want ErrMalformedAuthorization", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.scheme != tt.wantScheme || a.headerValue() != tt.wantHeader {
				t.Errorf("got %s %q, want %s %q", a.scheme, a.headerValue(), tt.wantScheme, tt.wantHeader)
			}
		})
	}
}

func TestAuthorizationNeverPrintsTheSecret(t *testing.T) {
	a := BasicAuth("KEY", "s3cr3t")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("call", "auth", a)
	for _, s := range []string{
		fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a), fmt.Sprintf("%v", struct{ A Authorization }{a}), logs.String(),
	} {
		if strings.Contains(s, "S0VZOnMzY3IzdA") || strings.Contains(s, "s3cr3t") {
			t.Errorf("credential printed: %s", s)
		}
		if !strings.Contains(s, "Basic [redacted]") {
			t.Errorf("want the scheme and a redaction mark in %q", s)
		}
	}
	if got := (Authorization{}).String(); got != "none" {
		t.Errorf("zero value prints %q, want none", got)
	}
}

// One key and secret is one credential however its base64 is spelt: the
// value forwarded, and so every hash of it, is the canonical one.
func TestParseAuthorizationCanonicalBasic(t *testing.T) {
	// "KEY:s3cr3t?" encodes to "S0VZOnMzY3IzdD8=" (standard) and
	// "S0VZOnMzY3IzdD8" (unpadded); "S0VZOnMzY3IzdD9=" has a non-zero unused bit.
	canonical := BasicAuth("KEY", "s3cr3t?")
	for _, in := range []string{
		"Basic S0VZOnMzY3IzdD8=",
		"basic S0VZOnMzY3IzdD8",
		"BASIC S0VZOnMzY3IzdD9=",
		"Basic S0VZOnMzY3IzdD9",
	} {
		t.Run(in, func(t *testing.T) {
			a, err := ParseAuthorization(in)
			if err != nil {
				t.Fatal(err)
			}
			if a.headerValue() != canonical.headerValue() || credentialID(a) != credentialID(canonical) {
				t.Errorf("%q forwards %q, want the canonical %q", in, a.headerValue(), canonical.headerValue())
			}
		})
	}
	// The URL alphabet: "KEY:>>>?" is "S0VZOj4+Pj8=" in standard base64.
	a, err := ParseAuthorization("Basic S0VZOj4-Pj8")
	if err != nil {
		t.Fatal(err)
	}
	if want := BasicAuth("KEY", ">>>?"); a.headerValue() != want.headerValue() {
		t.Errorf("URL alphabet forwards %q, want %q", a.headerValue(), want.headerValue())
	}
}

func TestParseAuthorizationLength(t *testing.T) {
	bearer := func(n int) string { return "Bearer " + strings.Repeat("a", n-len("Bearer ")) }
	if _, err := ParseAuthorization(bearer(MaxAuthorizationBytes)); err != nil {
		t.Errorf("a %d-byte value: %v, want accepted", MaxAuthorizationBytes, err)
	}
	for _, n := range []int{MaxAuthorizationBytes + 1, 9 << 10, 1 << 20} {
		_, err := ParseAuthorization(bearer(n))
		if !errors.Is(err, ErrAuthorizationTooLong) {
			t.Errorf("a %d-byte value: err = %v, want ErrAuthorizationTooLong", n, err)
		}
	}
}
