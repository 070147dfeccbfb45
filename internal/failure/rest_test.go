package failure

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/acme/plugin-facade/internal/upstream"
)

// TestRenderedFromTheStatusAlone: a failure that crossed a process boundary
// as its google.rpc.Status, in bytes (as the fleet's watch relay carries it),
// renders over REST exactly as where it was built, for every failure the
// README's table names.
func TestRenderedFromTheStatusAlone(t *testing.T) {
	for row, errs := range readmeRows() {
		for _, err := range errs {
			f, ok := err.(*Error)
			if !ok {
				f = FromUpstream(err, "api.confluent.cloud", upstream.Meta{Attempts: 1})
			}
			b, merr := proto.Marshal(f.GRPCStatus().Proto())
			if merr != nil {
				t.Fatal(merr)
			}
			var p spb.Status
			if err := proto.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			relayed := FromStatus(status.FromProto(&p))
			if diff := cmp.Diff(RenderREST(f.GRPCStatus()), RenderREST(relayed.GRPCStatus())); diff != "" {
				t.Errorf("%q: rendered otherwise after the round trip (-here +there):\n%s", row, diff)
			}
			if relayed.Reason() != f.Reason() || relayed.Error() != f.Error() {
				t.Errorf("%q: reason %q, error %q after the round trip; want %q, %q", row, relayed.Reason(), relayed.Error(), f.Reason(), f.Error())
			}
		}
	}
}

// TestCarriedEnvelopeBound: the upstream's envelope rides in the status up to
// MaxCarriedEnvelope and reaches REST callers as sent; a larger one does not
// ride, and REST callers get an envelope written from the status, with the
// upstream's status and headers still as sent.
func TestCarriedEnvelopeBound(t *testing.T) {
	answer := func(detail string) *upstream.Error {
		env := []byte(`{"errors":[{"id":"e1","status":"404","code":"not_found","title":"Not Found","detail":"` + detail + `"}]}`)
		return &upstream.Error{StatusCode: 404, RequestID: "req-1", Envelope: env,
			Items:     []upstream.ErrorItem{{ID: "e1", Status: "404", Code: "not_found", Title: "Not Found", Detail: detail}},
			RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1},
			Header:    http.Header{"X-Request-Id": {"req-1"}}}
	}
	small, large := answer("x"), answer(strings.Repeat("x", MaxCarriedEnvelope))
	for _, tt := range []struct {
		name     string
		e        *upstream.Error
		asSent   bool
		wantCode string
	}{
		{"within the bound", small, true, "not_found"},
		{"over the bound", large, false, "not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := RenderREST(FromUpstream(tt.e, "api.confluent.cloud", upstream.Meta{Attempts: 1}).GRPCStatus())
			if r.Status != 404 || r.Header.Get("X-Request-Id") != "req-1" {
				t.Errorf("status %d, X-Request-Id %q; want the upstream's 404 and req-1", r.Status, r.Header.Get("X-Request-Id"))
			}
			if got := string(r.Body) == string(tt.e.Envelope); got != tt.asSent {
				t.Errorf("body as sent: %v, want %v (%d bytes)", got, tt.asSent, len(r.Body))
			}
			if !strings.Contains(string(r.Body), `"code":"`+tt.wantCode+`"`) {
				t.Errorf("body %.200s has no code %q", r.Body, tt.wantCode)
			}
		})
	}
}

// TestFromErrorGivesEveryFailureAnErrorInfo: a status another library built
// (grpc-gateway's generated handlers answer a path they cannot parse with a
// bare INVALID_ARGUMENT) becomes a failure with its ErrorInfo; a failure
// stays itself.
func TestFromErrorGivesEveryFailureAnErrorInfo(t *testing.T) {
	bare := status.Error(codes.InvalidArgument, "missing parameter plugin_id")
	f := FromError(bare)
	if f.Reason() != ReasonInvalidArgument || errorInfo(f.GRPCStatus()).GetDomain() != FacadeDomain || f.Unwrap() != bare {
		t.Errorf("reason %q, domain %q, cause %v; want %s, %s and the bare status", f.Reason(),
			errorInfo(f.GRPCStatus()).GetDomain(), f.Unwrap(), ReasonInvalidArgument, FacadeDomain)
	}
	if r := RenderREST(f.GRPCStatus()); r.Status != 400 || !strings.Contains(string(r.Body), `"code":"invalid_argument"`) {
		t.Errorf("REST %d %s, want 400 invalid_argument", r.Status, r.Body)
	}
	own := Refused(ReasonNoCredentials, "no credentials")
	if FromError(own) != own {
		t.Error("a failure was rebuilt")
	}
}
