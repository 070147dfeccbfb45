package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// errorHandler is the gateway's default error handler (the status as JSON, the
// HTTP status from the gRPC code), plus the headers an HTTP client looks for: a
// Retry-After from the status's RetryInfo, and the upstream's X-Request-Id from
// its RequestInfo.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.RetryInfo:
				if secs := d.GetRetryDelay().AsDuration().Seconds(); secs > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(secs+0.999)))
				}
			case *errdetails.RequestInfo:
				if id := d.GetRequestId(); id != "" {
					w.Header().Set("X-Request-Id", id)
				}
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
