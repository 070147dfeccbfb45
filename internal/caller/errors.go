package caller

import (
	"fmt"
	"time"

	"github.com/acme/plugin-facade/internal/failure"
)

// The failures the Guard answers with, each a failure.Error (internal/failure
// holds their reasons and kinds with every other failure's, and renders them
// over REST as the upstream's Failure envelope: 401 with the default
// challenge, 403, 429 with Retry-After). None holds a token.

// Reasons, as the ErrorInfo of each failure says.
const (
	ReasonBadToken          = failure.ReasonBadCallerToken
	ReasonShareExceeded     = failure.ReasonShareExhausted
	ReasonCallerUnknown     = failure.ReasonCallerUnknown
	ReasonMethodDenied      = failure.ReasonCallerMethod
	ReasonEnvironmentDenied = failure.ReasonEnvironment
	ReasonPluginDenied      = failure.ReasonPlugin
)

func errBadToken(problem error) error {
	return failure.CallerToken("the bearer token for this service is not accepted: " + problem.Error())
}

func errDenied(id Identity, method string, d denial) error {
	return failure.Denied(d.reason, fmt.Sprintf("caller %s may not make this call: %s", id.Name, d.detail),
		map[string]string{failure.KeyCaller: id.Name, failure.KeyMethod: method})
}

// errOverShare is the answer to a caller whose budget of the service's key is
// spent: its own retry hint, while the key may still serve others.
func errOverShare(id Identity, b Rate, wait time.Duration) error {
	wait = wait.Round(time.Millisecond)
	return failure.ShareExhausted(fmt.Sprintf(
		"caller %s has spent its share of this service's Confluent Cloud API key (%d calls per %s); retry in %s",
		id.Name, b.Calls, b.Period, wait), wait, "caller:"+id.Name,
		map[string]string{failure.KeyCaller: id.Name, failure.KeyShareCalls: fmt.Sprint(b.Calls),
			failure.KeySharePeriodSeconds: fmt.Sprint(b.Period.Seconds())})
}
