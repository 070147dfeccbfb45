package upstream

import (
	"bytes"
	"slices"
	"strings"
)

// scanUnknown returns what walk returns for body decoded into an any, the
// dotted path of every member tree does not name, without decoding it:
// it reads the JSON in place, allocating only for the paths it returns
// (decoding every answer a second time into maps cost more than the rest of
// the call log and tracing together). body must be valid JSON, as an answer
// that decoded into its resource is: what scanUnknown reads of invalid JSON
// means nothing.
// ok is false when scanUnknown cannot say (a member name with an escape or a
// byte past ASCII), and the
// caller decodes and walks instead.
//
// The paths come in walk's order: sorted by name within each object, depth
// first. A member named twice in one object is read twice, where walk sees
// only its last value.
func scanUnknown(body []byte, tree fieldTree) (unknown []string, ok bool) {
	s := scanner{b: body}
	if !s.value(tree) {
		return nil, false
	}
	if s.space(); s.i != len(s.b) {
		return nil, false
	}
	return s.unknown, true
}

type scanner struct {
	b       []byte
	i       int
	path    []byte // the dotted path of the value being read, ending in "."
	unknown []string
}

// scanMember is an object's member with unknown paths: its name, and where
// its paths are in scanner.unknown.
type scanMember struct {
	name       string
	start, end int
}

func byName(a, b scanMember) int { return strings.Compare(a.name, b.name) }

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value reads one JSON value; tree says which members an object there may
// have (nil: anything, unread).
func (s *scanner) value(tree fieldTree) bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '{':
		return s.object(tree)
	case '[':
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(tree) {
				return false
			}
			s.space()
			if s.i >= len(s.b) {
				return false
			}
			s.i++
			switch s.b[s.i-1] {
			case ',':
			case ']':
				return true
			default:
				return false
			}
		}
	case '"':
		return s.skipString()
	default: // a number, true, false or null: json.Valid checked its spelling
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

// object reads an object, reporting the members tree does not name when
// tree is not nil, in walk's order: each member's own unknown paths, sorted
// by the member's name.
func (s *scanner) object(tree fieldTree) bool {
	s.i++ // {
	var members []scanMember
	first := len(s.unknown)
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.space()
		name, ok := s.str()
		if !ok || name == nil {
			return false // an escaped name (nil), or not a name at all
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		start := len(s.unknown)
		if tree == nil {
			if !s.value(nil) {
				return false
			}
		} else if sub, known := tree[string(name)]; !known {
			p := string(s.path) + string(name)
			if !slices.Contains(s.unknown, p) {
				s.unknown = append(s.unknown, p)
			}
			if !s.value(nil) {
				return false
			}
		} else {
			n := len(s.path)
			s.path = append(append(s.path, name...), '.')
			ok := s.value(sub)
			s.path = s.path[:n]
			if !ok {
				return false
			}
		}
		if len(s.unknown) > start {
			members = append(members, scanMember{string(name), start, len(s.unknown)})
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		s.i++
		switch s.b[s.i-1] {
		case ',':
		case '}':
			if len(members) > 1 {
				s.order(first, members)
			}
			return true
		default:
			return false
		}
	}
}

// order puts the paths of an object's members, s.unknown[first:], in the
// order of the members' names.
func (s *scanner) order(first int, members []scanMember) {
	if slices.IsSortedFunc(members, byName) {
		return
	}
	slices.SortStableFunc(members, byName)
	paths := make([]string, 0, len(s.unknown)-first)
	for _, m := range members {
		paths = append(paths, s.unknown[m.start:m.end]...)
	}
	copy(s.unknown[first:], paths)
}

// skipString reads a string whose value does not matter.
func (s *scanner) skipString() bool {
	s.i++ // "
	for {
		j := bytes.IndexByte(s.b[s.i:], '"')
		if j < 0 {
			return false
		}
		s.i += j + 1
		// The quote ends the string unless an odd number of backslashes
		// escapes it.
		n := 0
		for k := s.i - 2; k >= 0 && s.b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
	}
}

// str reads a string and returns its bytes between the quotes, or nil
// with ok when it holds an escape or a byte past ASCII (the bytes may then
// not be its value: the decoder replaces invalid UTF-8).
func (s *scanner) str() (v []byte, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	s.i++
	start, escaped := s.i, false
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		default:
			if s.b[s.i] >= 0x80 {
				escaped = true
			}
		case '"':
			s.i++
			if escaped {
				return nil, true
			}
			return s.b[start : s.i-1], true
		}
		s.i++
	}
	return nil, false
}
