package service

import (
	"fmt"

	"github.com/acme/plugin-facade/internal/failure"
)

// maxIDLength is the upstream's documented maxLength for identifiers.
const maxIDLength = 255

// field is one request field to validate, by its proto name.
type field struct {
	name, value string
}

// validate checks identifier fields before anything is sent upstream. Beyond the
// upstream's own bounds, it only admits RFC 3986 unreserved characters (letters,
// digits, '-', '.', '_', '~'), which every Confluent Cloud id is made of and which
// cannot change a URL's path or query even unescaped; "." and ".." alone are
// refused because they are path navigation. It returns a violation for every
// offending field (failure.Invalid makes them the caller's error).
func validate(fields ...field) []failure.Violation {
	var violations []failure.Violation
	for _, f := range fields {
		if problem := checkID(f.value); problem != "" {
			violations = append(violations, failure.Violation{Field: f.name, Description: problem, Reason: "INVALID_IDENTIFIER"})
		}
	}
	return violations
}

// checkID returns what is wrong with an identifier, or "" if nothing is.
func checkID(v string) string {
	switch {
	case v == "":
		return "is required"
	case len(v) > maxIDLength:
		return fmt.Sprintf("must be at most %d characters, got %d", maxIDLength, len(v))
	case v == "." || v == "..":
		return fmt.Sprintf("must not be %q", v)
	}
	for i, r := range v {
		if !isUnreserved(r) {
			return fmt.Sprintf("character %q at offset %d is not allowed: use letters, digits, '-', '_', '.' or '~'", r, i)
		}
	}
	return ""
}

func isUnreserved(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '-' || r == '.' || r == '_' || r == '~'
}
