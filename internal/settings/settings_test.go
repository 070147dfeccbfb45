package settings

import (
	"errors"
	"fmt"
	"testing"

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
