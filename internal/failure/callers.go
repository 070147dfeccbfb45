package failure

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Reasons of the failures internal/caller decides before the service runs:
// a bad token of the facade's OIDC issuer, a call the caller policy denies,
// a caller over its fair share of the service's key. Their kinds are in
// facadeKinds with the others.
const (
	ReasonBadCallerToken  = "INVALID_CALLER_TOKEN"
	ReasonCallerUnknown   = "CALLER_NOT_IN_POLICY"
	ReasonCallerMethod    = "CALLER_METHOD_NOT_ALLOWED"
	ReasonEnvironment     = "ENVIRONMENT_NOT_ALLOWED"
	ReasonPlugin          = "PLUGIN_NOT_ALLOWED"
	ReasonShareExhausted  = "CALLER_SHARE_EXHAUSTED"
	KeyCaller             = "caller"             // ErrorInfo metadata: the caller's identity (never a token)
	KeyMethod             = "method"             // the method the policy denied
	KeyShareCalls         = "shareCalls"         // the caller's budget: calls...
	KeySharePeriodSeconds = "sharePeriodSeconds" // ...per this many seconds
)

// CallerToken is the failure of a call whose bearer token, meant for the
// facade, does not verify; msg says what is wrong, never the token.
func CallerToken(msg string) *Error { return Refused(ReasonBadCallerToken, msg) }

// Denied is the failure of a call the caller policy refuses, for reason (one
// of ReasonCallerUnknown, ReasonCallerMethod, ReasonEnvironment,
// ReasonPlugin); md holds KeyCaller and KeyMethod.
func Denied(reason, msg string, md map[string]string) *Error {
	return newError(nil, reason, msg, info(reason, FacadeDomain, md))
}

// ShareExhausted is the failure of a call whose caller has spent its fair
// share of the service's key: retry is when its own next token comes (a
// RetryInfo, REST's Retry-After), subject names the caller in the
// QuotaFailure; md holds KeyCaller and the share's size.
func ShareExhausted(msg string, retry time.Duration, subject string, md map[string]string) *Error {
	return newError(nil, ReasonShareExhausted, msg, info(ReasonShareExhausted, FacadeDomain, md), retryInfo(retry),
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject: subject, Description: "share of the service's Confluent Cloud API key exhausted"}}})
}
