package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Response headers the upstream documents.
const (
	headerRequestID          = "X-Request-Id"
	headerRateLimitLimit     = "X-RateLimit-Limit"
	headerRateLimitRemaining = "X-RateLimit-Remaining"
	headerRateLimitReset     = "X-RateLimit-Reset"
	headerRetryAfter         = "Retry-After"
	headerWWWAuthenticate    = "WWW-Authenticate"
)

// maxExcerpt bounds how much of a body that is not a Failure envelope (an HTML
// page from a proxy, say) is kept for the error message.
const maxExcerpt = 200

// Error is a non-2xx answer from the upstream, with its Failure envelope
// ({"errors":[...]}) decoded and the headers that matter to a caller parsed.
// Nothing the upstream said is dropped: Items holds every error it listed.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Items are the errors of the Failure envelope, in the upstream's order.
	// Empty when the body was not a Failure envelope (see Excerpt).
	Items []ErrorItem
	// RequestID is the upstream's X-Request-Id, which its support asks for.
	RequestID string
	// RateLimit holds the X-RateLimit-* headers, when sent.
	RateLimit RateLimit
	// RetryAfter is how long the upstream asked us to wait: Retry-After, or
	// the X-RateLimit-Reset of an exhausted window (a 429, or Remaining 0),
	// whichever is later; zero when it gave no hint. The upstream sends the
	// X-RateLimit-* headers on every answer: a reset is a hint only when the
	// window is exhausted, never for a 5xx with requests remaining.
	RetryAfter time.Duration
	// Authenticate is the WWW-Authenticate challenge of a 401, which says why the
	// credentials were refused (for example error="invalid_key").
	Authenticate string
	// Excerpt is the start of a body that was not a Failure envelope, so that
	// something of an unexpected answer still reaches a person.
	Excerpt string
	// Envelope is the body exactly as sent when it was a Failure envelope
	// (Items holds it decoded); nil otherwise.
	Envelope []byte
	// Header holds the documented headers of the answer that it sent
	// (X-Request-Id, X-RateLimit-Limit, -Remaining, -Reset, Retry-After,
	// WWW-Authenticate), as sent but for any byte that is not printable
	// ASCII, which becomes '?'.
	Header http.Header
}

// ErrorItem is one problem of the Failure envelope.
type ErrorItem struct {
	// ID identifies this occurrence of the problem.
	ID string `json:"id,omitempty"`
	// Status is the HTTP status code of the problem, as a string.
	Status string `json:"status,omitempty"`
	// Code is the upstream's application-specific code, for example
	// "user_unauthenticated" or "invalid_filter".
	Code string `json:"code,omitempty"`
	// Title is a short summary that does not change between occurrences.
	Title string `json:"title,omitempty"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Source names the part of the request that caused the problem, if any.
	Source *ErrorSource `json:"source,omitempty"`
	// ErrorCode and Message are undocumented fields of the envelope's schema,
	// kept because some upstream answers fill them instead of Title and Detail.
	ErrorCode *int32  `json:"error_code,omitempty"`
	Message   *string `json:"message,omitempty"`
}

// ErrorSource points at the part of the request that caused a problem.
type ErrorSource struct {
	// Pointer is a JSON Pointer (RFC 6901) into the request document.
	Pointer string `json:"pointer,omitempty"`
	// Parameter is the query parameter that caused the problem.
	Parameter string `json:"parameter,omitempty"`
}

// RateLimit is the upstream's rate-limit window as its headers describe it.
// Each field is -1 when its header was absent or not a number.
type RateLimit struct {
	// Limit is the number of requests allowed per window.
	Limit int
	// Remaining is the number of requests left in the current window.
	Remaining int
	// Reset is the time until the window resets. The upstream sends it in
	// seconds relative to now, not as an epoch timestamp.
	Reset time.Duration
}

// failure is the upstream's error envelope.
type failure struct {
	Errors []ErrorItem `json:"errors"`
}

// ErrBodyTooLarge is wrapped by the error of an answer whose body exceeds the
// client's cap (WithMaxBodyBytes).
var ErrBodyTooLarge = errors.New("the response body exceeds the size limit")

func newError(a *answer) *Error {
	e := &Error{
		StatusCode:   a.status,
		RequestID:    headerText(a.header, headerRequestID),
		RateLimit:    parseRateLimit(a.header),
		Authenticate: headerText(a.header, headerWWWAuthenticate),
		Header:       documentedHeaders(a.header),
	}
	ra, _ := parseSeconds(a.header.Get(headerRetryAfter))
	e.RetryAfter = retryAfterOf(a.status, e.RateLimit, ra)
	var f failure
	switch {
	case a.tooLarge:
		e.Excerpt = "(the body exceeds the size limit and was not read)"
	case json.Unmarshal(a.body, &f) == nil && len(f.Errors) > 0:
		e.Items = f.Errors
		e.Envelope = a.body
	default:
		e.Excerpt = excerpt(a.body)
	}
	return e
}

// Error describes the failure in the upstream's own words, for logs. It holds
// nothing of the request's credentials.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if s := e.Summary(); s != "" {
		b.WriteString(": " + s)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	return b.String()
}

// Summary joins the title and detail of every item ("Title: detail; ..."), or
// returns the excerpt of a body that was not a Failure envelope. It is what a
// person needs to read to act on the failure.
func (e *Error) Summary() string {
	parts := make([]string, 0, len(e.Items))
	for _, it := range e.Items {
		if s := it.Summary(); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return e.Excerpt
	}
	return strings.Join(parts, "; ")
}

// Code returns the upstream's application code of the first item that has one.
func (e *Error) Code() string {
	for _, it := range e.Items {
		if it.Code != "" {
			return it.Code
		}
	}
	return ""
}

// Summary is "Title: detail" of the item, or whichever of them it has (its
// message when it has neither).
func (it ErrorItem) Summary() string {
	title, detail := it.Title, it.Detail
	if title == "" && detail == "" && it.Message != nil {
		detail = *it.Message
	}
	switch {
	case title != "" && detail != "" && title != detail:
		return title + ": " + detail
	case title != "":
		return title
	default:
		return detail
	}
}

// Exhausted reports whether the window has no request left and says when it
// resets: the one rule of an exhausted window, for the retry hint, the guard
// and the watch's polling.
func (rl RateLimit) Exhausted() bool { return rl.Remaining == 0 && rl.Reset > 0 }

// minThrottle is how long a 429 that says nothing of when to come back holds
// its credential back.
const minThrottle = time.Second

// retryAfterOf is how long an answer asks its caller to wait (zero for no
// hint), from its status, its rate-limit window and its Retry-After (zero when
// absent). A 429 is about the rate-limit window, so its wait is never shorter
// than the reset; nor is that of any answer saying the window is exhausted.
// The rate-limit guard holds the credential back for this same wait.
func retryAfterOf(status int, rl RateLimit, retryAfter time.Duration) time.Duration {
	switch {
	case status == http.StatusTooManyRequests:
		return max(retryAfter, rl.Reset, minThrottle)
	case rl.Exhausted():
		return max(retryAfter, rl.Reset)
	}
	return retryAfter
}

// noRateLimit is a RateLimit of which no header was sent.
var noRateLimit = RateLimit{Limit: -1, Remaining: -1, Reset: -1}

func parseRateLimit(h http.Header) RateLimit {
	r := noRateLimit
	if n, ok := headerCount(h.Get(headerRateLimitLimit)); ok {
		r.Limit = n
	}
	if n, ok := headerCount(h.Get(headerRateLimitRemaining)); ok {
		r.Remaining = n
	}
	if d, ok := parseSeconds(h.Get(headerRateLimitReset)); ok {
		r.Reset = d
	}
	return r
}

// parseSeconds reads a non-negative number of seconds, as the upstream sends in
// Retry-After and X-RateLimit-Reset. (Retry-After may also be an HTTP date in
// general; the upstream documents seconds, and a date is ignored.)
func parseSeconds(v string) (time.Duration, bool) {
	n, ok := headerCount(v)
	return time.Duration(n) * time.Second, ok
}

// headerCount reads a header's non-negative integer (of at most 32 bits).
// An absent header is the common case (a success carries no Retry-After),
// so it is told apart before strconv, whose error allocates.
func headerCount(v string) (int, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return int(n), true
}

// markup matches HTML/XML tags and comments, which say nothing to a person
// reading an error message.
// A script or style block left open (cut off by the size limit) runs to the end.
var markup = regexp.MustCompile(`(?is)<!--.*?(-->|$)|<(script|style)\b.*?(</(script|style)\s*>|$)|<[^>]*(>|$)`)

// maxMarkup is how much of a body the excerpt is looked for in: proxies' error
// pages carry kilobytes of inline style before their words.
const maxMarkup = 64 << 10

// excerpt returns the start of a body that is not a Failure envelope as one
// short line a person can read: markup and control characters removed,
// whitespace collapsed, at most maxExcerpt bytes of valid UTF-8.
func excerpt(body []byte) string {
	if len(body) > maxMarkup {
		body = body[:maxMarkup]
	}
	s := markup.ReplaceAllString(strings.ToValidUTF8(string(body), ""), " ")
	s = html.UnescapeString(s)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxExcerpt {
		s = s[:maxExcerpt]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// documentedHeaders returns the headers of h that the upstream documents for
// its answers, made safe by headerText.
func documentedHeaders(h http.Header) http.Header {
	out := make(http.Header, 6)
	for _, key := range []string{headerRequestID, headerRateLimitLimit, headerRateLimitRemaining,
		headerRateLimitReset, headerRetryAfter, headerWWWAuthenticate} {
		if _, ok := h[http.CanonicalHeaderKey(key)]; ok {
			out.Set(key, headerText(h, key))
		}
	}
	return out
}

// headerText is a header's value as text that is safe to pass on in messages,
// gRPC metadata and status details: printable ASCII, as HTTP header values
// should be; any other byte becomes '?'.
func headerText(h http.Header, key string) string {
	v := h.Get(key)
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f {
			b := []byte(v)
			for j, c := range b {
				if c < 0x20 || c >= 0x7f {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return v
}
