package upstream

import "net/http"

// WindowOf reads the rate-limit window an answer's headers describe
// (X-RateLimit-Limit, -Remaining and -Reset), as the client and its guard
// read it; each field is -1 when its header is absent. Whoever watches the
// client's traffic (a transport given to WithTransport) uses it to learn a
// credential's window without a second reading of the headers.
func WindowOf(h http.Header) RateLimit { return parseRateLimit(h) }
