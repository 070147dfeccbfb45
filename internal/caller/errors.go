package caller

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acme/plugin-facade/internal/failure"
)

// The failures this package answers with, built here alone. Each is a gRPC
// status with an ErrorInfo of its own reason; internal/failure renders it
// over REST by its code, in the upstream's Failure envelope (401 with the
// default challenge, 403, 429 with Retry-After from the RetryInfo). None
// holds a token.

// errorDomain is the ErrorInfo domain of failures the facade decides itself.
const errorDomain = failure.FacadeDomain

// Reasons of the failures besides the policy's denials (policy.go).
const (
	ReasonBadToken      = "INVALID_CALLER_TOKEN"
	ReasonShareExceeded = "CALLER_SHARE_EXHAUSTED"
)

func errBadToken(problem error) error {
	st := status.New(codes.Unauthenticated, "the bearer token for this service is not accepted: "+problem.Error())
	return withDetails(st, &errdetails.ErrorInfo{Reason: ReasonBadToken, Domain: errorDomain}).Err()
}

func errDenied(id Identity, method string, d denial) error {
	st := status.New(codes.PermissionDenied, fmt.Sprintf("caller %s may not make this call: %s", id.Name, d.detail))
	return withDetails(st, &errdetails.ErrorInfo{Reason: d.reason, Domain: errorDomain,
		Metadata: map[string]string{"caller": id.Name, "method": method}}).Err()
}

// errOverShare is the answer to a caller whose budget of the service's key is
// spent: its own retry hint, while the key may still serve others.
func errOverShare(id Identity, b Rate, wait time.Duration) error {
	wait = wait.Round(time.Millisecond)
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"caller %s has spent its share of this service's Confluent Cloud API key (%d calls per %s); retry in %s",
		id.Name, b.Calls, b.Period, wait))
	return withDetails(st,
		&errdetails.ErrorInfo{Reason: ReasonShareExceeded, Domain: errorDomain, Metadata: map[string]string{
			"caller": id.Name, "shareCalls": fmt.Sprint(b.Calls), "sharePeriodSeconds": fmt.Sprint(b.Period.Seconds())}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject: "caller:" + id.Name, Description: "share of the service's Confluent Cloud API key exhausted"}}},
	).Err()
}

func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if s, err := st.WithDetails(details...); err == nil {
		return s
	}
	return st
}
