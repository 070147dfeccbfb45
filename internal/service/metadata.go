package service

import (
	"errors"
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/acme/plugin-facade/internal/upstream"
)

// Response metadata keys: the upstream's response headers that matter to a
// caller, under their own (lower-case) names. The gateway passes them on to
// REST callers as plain HTTP headers.
const (
	MDRequestID          = "x-request-id"
	MDRateLimitLimit     = "x-ratelimit-limit"
	MDRateLimitRemaining = "x-ratelimit-remaining"
	MDRateLimitReset     = "x-ratelimit-reset"
	MDRetryAfter         = "retry-after"
)

// ResponseHeaders lists the metadata keys above, for the gateway.
var ResponseHeaders = []string{MDRequestID, MDRateLimitLimit, MDRateLimitRemaining, MDRateLimitReset, MDRetryAfter}

// responseMetadata is the response metadata of a call: the request id and
// rate-limit window of the upstream's last answer, and its Retry-After. When
// the rate-limit guard answered, they describe the window it remembers.
func responseMetadata(meta upstream.Meta, err error) metadata.MD {
	md := metadata.MD{}
	if meta.RequestID != "" {
		md.Set(MDRequestID, meta.RequestID)
	}
	rl := meta.RateLimit
	if rl.Limit >= 0 {
		md.Set(MDRateLimitLimit, strconv.Itoa(rl.Limit))
	}
	if rl.Remaining >= 0 {
		md.Set(MDRateLimitRemaining, strconv.Itoa(rl.Remaining))
	}
	if rl.Reset >= 0 {
		md.Set(MDRateLimitReset, strconv.Itoa(upstream.Seconds(rl.Reset)))
	}
	retryAfter := meta.RetryAfter
	var th *upstream.ThrottledError
	if errors.As(err, &th) {
		retryAfter = th.RetryAfter
	}
	if retryAfter > 0 {
		md.Set(MDRetryAfter, strconv.Itoa(upstream.Seconds(retryAfter)))
	}
	return md
}
