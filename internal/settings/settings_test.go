package settings

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestProblems(t *testing.T) {
	var ps Problems
	ps.Check(true, "Fine", "is never reported")
	ps.Check(false, "MaxAttempts", "must be between 1 and %d", 10)
	ps.Add("URL", nil)
	ps.Add("URL", errors.New("not a valid URL"))
	err := ps.Err()
	want := []*Problem{{"MaxAttempts", "must be between 1 and 10"}, {"URL", "not a valid URL"}}
	if diff := cmp.Diff(want, All(err)); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, All(fmt.Errorf("wrapped: %w", err))); diff != "" {
		t.Errorf("All of a wrapped error (-want +got):\n%s", diff)
	}
	if got := err.Error(); got != "MaxAttempts must be between 1 and 10\nURL not a valid URL" {
		t.Errorf("Error() = %q", got)
	}
	var none Problems
	if none.Err() != nil || All(errors.New("other")) != nil {
		t.Error("no problem reported as one")
	}
}

func TestOrDefaults(t *testing.T) {
	type policy struct {
		Attempts int
		Delay    time.Duration
		Name     string
	}
	defaults := policy{Attempts: 3, Delay: time.Second, Name: "default"}
	for _, tc := range []struct {
		name string
		in   policy
		want policy
	}{
		{"nothing set keeps every default", policy{}, defaults},
		{"a field set keeps its value, the others their defaults", policy{Delay: time.Minute}, policy{Attempts: 3, Delay: time.Minute, Name: "default"}},
		{"every field set keeps every value", policy{Attempts: 1, Delay: time.Millisecond, Name: "mine"}, policy{Attempts: 1, Delay: time.Millisecond, Name: "mine"}},
		{"a negative value is set, not zero", policy{Attempts: -1}, policy{Attempts: -1, Delay: time.Second, Name: "default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OrDefaults(tc.in, defaults); got != tc.want {
				t.Errorf("OrDefaults(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}
