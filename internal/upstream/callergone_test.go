package upstream

import (
	"context"
	"errors"
	"testing"

	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// A call whose caller has already gone (a reset stream) sends no request:
// it would spend the credential's budget on an answer nobody reads.
func TestCallerAlreadyGoneSendsNothing(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-1"}`})
	c, err := New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err = c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if up.Count() != 0 {
		t.Errorf("%d upstream requests, want 0", up.Count())
	}
	if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil || up.Count() != 1 {
		t.Errorf("a caller still there: %v with %d requests, want 1", err, up.Count())
	}
}
