package sandbox_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
)

func TestLifecycle(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := start(t, sandbox.WithClock(clock.Now), sandbox.WithLifecycle(5*time.Second))
	read := func(id string) (phase, errorMessage, updatedAt string) {
		t.Helper()
		resp, body := do(t, s.URL(), "GET", "/ccpm/v1/plugins/"+sandbox.PluginID+"/versions/"+id+"?environment="+sandbox.Environment, basicAuth)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", id, resp.StatusCode, body)
		}
		var v struct {
			Metadata struct {
				UpdatedAt string `json:"updated_at"`
			} `json:"metadata"`
			Status struct {
				Phase        string `json:"phase"`
				ErrorMessage string `json:"error_message"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Status.Phase, v.Status.ErrorMessage, v.Metadata.UpdatedAt
	}
	tests := []struct {
		id, final string
		withError bool
	}{
		{sandbox.ProcessingVersionID, "READY", false},
		{sandbox.FailingVersionID, "FAILED", true},
	}
	for _, tt := range tests {
		phase, _, first := read(tt.id)
		if phase != "PROCESSING" || first != "2026-01-02T03:04:05Z" {
			t.Errorf("%s first read: %s updated %s, want PROCESSING updated now", tt.id, phase, first)
		}
	}
	clock.Advance(4 * time.Second)
	for _, tt := range tests {
		if phase, _, updated := read(tt.id); phase != "PROCESSING" || updated != "2026-01-02T03:04:05Z" {
			t.Errorf("%s within the processing time: %s updated %s, want PROCESSING, unchanged", tt.id, phase, updated)
		}
	}
	clock.Advance(time.Second)
	for _, tt := range tests {
		phase, msg, updated := read(tt.id)
		if phase != tt.final || (msg != "") != tt.withError || updated != "2026-01-02T03:04:10Z" {
			t.Errorf("%s after the processing time: %s %q updated %s, want %s updated 5s later", tt.id, phase, msg, updated, tt.final)
		}
	}
	clock.Advance(time.Minute)
	for _, tt := range tests {
		if phase, _, _ := read(tt.id); phase != "PROCESSING" {
			t.Errorf("%s a minute after it ended: %s, want its lifecycle to start over", tt.id, phase)
		}
	}
}
