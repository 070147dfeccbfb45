package failure

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/acme/plugin-facade/internal/upstream"
)

// readmeRows are the rows of the error mapping table of docs/errors.md, by their first
// cell, and the failures each stands for, built as the facade builds them.
func readmeRows() map[string][]error {
	noRL := upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}
	answer := func(status int, code string) error {
		return &upstream.Error{StatusCode: status, RateLimit: noRL, Items: []upstream.ErrorItem{{Status: strconv.Itoa(status), Code: code, Title: "t"}},
			Envelope: []byte(`{"errors":[{"status":"` + strconv.Itoa(status) + `","title":"t"}]}`)}
	}
	noEnvelope := func(status int, excerpt string) error {
		return &upstream.Error{StatusCode: status, RateLimit: noRL, Excerpt: excerpt}
	}
	transport := func(err, ctxErr error) error {
		return &upstream.TransportError{Method: "GET", Path: "/x", Err: err, ContextErr: ctxErr}
	}
	return map[string][]error{
		"400":       {answer(400, "invalid_filter")},
		"401":       {answer(401, "user_unauthenticated")},
		"403":       {answer(403, "")},
		"404":       {answer(404, "")},
		"409":       {answer(409, "conflict"), answer(409, "duplicate")},
		"429":       {answer(429, "")},
		"500":       {answer(500, "")},
		"501":       {answer(501, "")},
		"502, 503":  {answer(502, ""), answer(503, "")},
		"504":       {answer(504, "")},
		"other 4xx": {answer(418, ""), answer(422, "")},
		"other 5xx": {answer(505, ""), answer(599, "")},
		"an error answer whose body is not an envelope (a proxy's HTML page, an empty body, a body over `--upstream-max-body-bytes`)": {
			noEnvelope(502, "Bad Gateway"), noEnvelope(500, "")},
		"no answer: connection refused or reset, closed before the answer, a host name that does not resolve": {
			transport(syscall.ECONNREFUSED, nil), transport(syscall.ECONNRESET, nil),
			transport(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}}, nil)},
		"no answer: a dial, DNS lookup or TLS handshake that timed out": {
			transport(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, nil),
			transport(&net.DNSError{Err: "i/o timeout", Name: "h", IsTimeout: true}, nil)},
		"no answer before the caller's deadline or `--upstream-timeout`": {transport(context.DeadlineExceeded, context.DeadlineExceeded)},
		"the caller canceled": {transport(context.Canceled, context.Canceled)},
		"a watch its caller left, or whose deadline passed, between two polls": {
			FromContext(context.Canceled), FromContext(context.DeadlineExceeded)},
		"the rate-limit guard: the window is known to be exhausted (never sent upstream)": {
			&upstream.ThrottledError{RetryAfter: 3 * time.Second, RateLimit: upstream.RateLimit{Limit: 80, Remaining: 0, Reset: 3 * time.Second}}},
		"a 3xx redirect (not followed)": {noEnvelope(301, ""), noEnvelope(302, "")},
		"2xx whose body is not the resource (not JSON, or no `id`/`kind`); over gRPC also a resource with a field of a type the contract does not expect, which REST passes on as sent": {&upstream.DecodeError{StatusCode: 200, Err: fmt.Errorf("no id")}},
		"2xx with a body over `--upstream-max-body-bytes`": {&upstream.DecodeError{StatusCode: 200, Err: upstream.ErrBodyTooLarge}},
		"invalid request (never sent upstream)": {
			Invalid(Violation{Field: "id", Description: "is required", Reason: "INVALID_IDENTIFIER"}),
			Invalid(Violation{Field: "poll_interval", Description: "must be valid", Reason: "INVALID_DURATION"}),
			Facade(ReasonInvalidArgument, "a query that does not parse")},
		"no credential, and no key of the facade's own (never sent upstream)": {Refused(ReasonNoCredentials, "no credentials")},
		"a malformed credential, or one over 8 KiB (never sent upstream)":     {Refused(ReasonBadCredentials, "invalid")},
		"a panic in a handler":                                                                  {Facade(ReasonInternal, "internal error")},
		"a REST call once shutdown has begun":                                                   {Facade(ReasonShuttingDown, "shutting down")},
		"a REST path or method the gateway does not serve":                                      {Facade(ReasonNoRoute, "GET /x"), Facade(ReasonMethodNotAllowed, "POST /x")},
		"a REST request with a body (the routes are `GET` only; never read)":                    {Facade(ReasonBodyNotAccepted, "GET /x")},
		"more unary calls in flight on a listener than `--max-in-flight` (never sent upstream)": {Busy(ReasonTooManyCalls, "too many calls", time.Second)},
		"more watches open than `--max-watchers` or `--max-watchers-per-caller`":                {Busy(ReasonTooManyWatchers, "too many watches", time.Second)},
		"a JWT of `--oidc-issuer` that does not verify: expired, not yet valid, another audience or issuer, unsigned, an unknown key, malformed (never sent upstream)": {
			CallerToken("the token has expired")},
		"the caller policy denies the call (never sent upstream)": {
			Denied(ReasonCallerUnknown, "m", nil), Denied(ReasonCallerMethod, "m", nil), Denied(ReasonEnvironment, "m", nil), Denied(ReasonPlugin, "m", nil)},
		"the caller has spent its fair share of the service's key (never sent upstream)": {
			ShareExhausted("m", 1500*time.Millisecond, "caller:ip:10.0.0.1", nil)},
	}
}

var (
	backticked = regexp.MustCompile("`([^`]*)`")
	httpNumber = regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	upperName  = regexp.MustCompile(`^[A-Z][A-Z_]+$`)
)

// TestREADMEMapsAsTheTable holds the error mapping table of docs/errors.md to the
// table of this package: every row's gRPC code, HTTP status, REST code,
// Retry-After and WWW-Authenticate, and whether it is retried, are what the
// facade does for the failures the row stands for; every row is covered, and
// every reason of the table appears.
func TestREADMEMapsAsTheTable(t *testing.T) {
	readme, err := os.ReadFile("../../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "## Error mapping\n")
	if !ok {
		t.Fatal("docs/errors.md has no Error mapping section")
	}
	rows, seen, reasons := readmeRows(), map[string]bool{}, map[string]bool{}
	for line := range strings.Lines(table) {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| Upstream answer") {
			if len(seen) > 0 && !strings.HasPrefix(line, "|") {
				break // the end of the table
			}
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), " | ")
		if len(cells) != 4 {
			t.Fatalf("row %q has %d cells, want 4", line, len(cells))
		}
		row := strings.TrimSpace(cells[0])
		errs, ok := rows[row]
		if !ok {
			t.Errorf("docs/errors.md row %q: no failure in readmeRows stands for it", row)
			continue
		}
		seen[row] = true
		for _, err := range errs {
			f, ok := err.(*Error)
			if !ok {
				f = FromUpstream(err, "api.confluent.cloud", upstream.Meta{Attempts: 1})
			}
			reasons[f.Reason()] = true
			checkRow(t, row, cells[1:], err, f)
		}
	}
	for row := range rows {
		if !seen[row] {
			t.Errorf("readmeRows has %q, which is no row of the table of docs/errors.md", row)
		}
	}
	for reason := range facadeKinds {
		if !reasons[reason] {
			t.Errorf("reason %s of the table is in no row of docs/errors.md", reason)
		}
	}
}

// checkRow checks one failure f (from err) against its docs/errors.md row's gRPC,
// REST and Retried cells.
func checkRow(t *testing.T, row string, cells []string, err error, f *Error) {
	t.Helper()
	st, rest := f.GRPCStatus(), RenderREST(f.GRPCStatus())
	grpcCell, restCell, retriedCell := cells[0], cells[1], strings.TrimSpace(cells[2])
	var grpcCodes []string // the code, and any the cell names as an exception
	for _, m := range backticked.FindAllStringSubmatch(grpcCell, -1) {
		if upperName.MatchString(m[1]) {
			grpcCodes = append(grpcCodes, m[1])
		}
	}
	if len(grpcCodes) > 0 && !slices.Contains(grpcCodes, upperSnake(st.Code())) {
		t.Errorf("%q: gRPC %s, docs/errors.md says %v", row, upperSnake(st.Code()), grpcCodes)
	}
	statuses := httpNumber.FindAllString(strings.Split(restCell, "(")[0], -1)
	if len(statuses) > 0 && !slices.Contains(statuses, strconv.Itoa(rest.Status)) {
		t.Errorf("%q: HTTP %d, docs/errors.md says %v", row, rest.Status, statuses)
	}
	if len(statuses) == 0 && rest.Status != upstreamStatus(err) {
		t.Errorf("%q: HTTP %d, docs/errors.md says the upstream's own status %d", row, rest.Status, upstreamStatus(err))
	}
	var restCodes []string
	for _, m := range backticked.FindAllStringSubmatch(restCell, -1) {
		if m[1] == strings.ToLower(m[1]) {
			restCodes = append(restCodes, m[1])
		}
	}
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if err := json.Unmarshal(rest.Body, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("%q: REST body %s is not a Failure envelope", row, rest.Body)
	}
	if len(restCodes) > 0 && !slices.Contains(restCodes, body.Errors[0].Code) {
		t.Errorf("%q: REST code %q, docs/errors.md says one of %v", row, body.Errors[0].Code, restCodes)
	}
	if answerOf(st) == nil || !passesOn(answerOf(st).GetStatus()) {
		for _, h := range []string{"Retry-After", "WWW-Authenticate"} {
			if said, got := strings.Contains(restCell, "`"+h), rest.Header.Get(h) != ""; said != got {
				t.Errorf("%q: %s sent %v, docs/errors.md says %v", row, h, got, said)
			}
		}
	}
	if retriedCell == "yes" || retriedCell == "no" {
		if got := upstream.IsTemporary(err); got != (retriedCell == "yes") {
			t.Errorf("%q: retried %v, docs/errors.md says %s", row, got, retriedCell)
		}
	}
}

// upstreamStatus is the HTTP status of the upstream answer err is; 0 for none.
func upstreamStatus(err error) int {
	if e, ok := err.(*upstream.Error); ok {
		return e.StatusCode
	}
	return 0
}

// upperSnake is a code's name as docs/errors.md writes it (NOT_FOUND).
func upperSnake(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED" // codes.Code's String says "Canceled"
	}
	return strings.ToUpper(snakeCase(c.String()))
}
