// Package settings is the one shape of an invalid setting. Every package with
// settings a deployment chooses (upstream, service, server, fleet) owns them
// as an exported Config, validates them once in Config.Validate and reports
// each problem as a *Problem naming the Config field. cmd/server only maps
// flags to those fields, so it reports a Problem under the flag's name
// instead of deciding again what a valid value is.
package settings

import (
	"errors"
	"fmt"
	"reflect"
)

// Problem is one setting that is not valid.
type Problem struct {
	// Field is the Config field, such as "MaxAttempts" or "Retry.MaxWait".
	Field string
	// Reason says what is wrong, in words that fit after the field's or the
	// flag's name ("must be positive"). It never repeats a secret.
	Reason string
}

func (p *Problem) Error() string { return p.Field + " " + p.Reason }

// Problems collects the problems of one Validate.
type Problems struct{ errs []error }

// Check records a problem with field unless ok.
func (ps *Problems) Check(ok bool, field, format string, args ...any) {
	if !ok {
		ps.errs = append(ps.errs, &Problem{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
}

// Add records err as a problem with field unless it is nil.
func (ps *Problems) Add(field string, err error) {
	if err != nil {
		ps.errs = append(ps.errs, &Problem{Field: field, Reason: err.Error()})
	}
}

// Err is every problem recorded, joined (errors.Join: each one can be found
// with errors.As or by unwrapping), or nil.
func (ps *Problems) Err() error { return errors.Join(ps.errs...) }

// All returns the problems in err, in order: the *Problem values joined by
// Problems.Err, or none when err holds none.
func All(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(err error) {
		if p, ok := err.(*Problem); ok {
			out = append(out, p)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		} else if e := errors.Unwrap(err); e != nil {
			walk(e)
		}
	}
	walk(err)
	return out
}

// OrDefaults returns v with each zero field replaced by the same field of
// defaults: the one merge rule of the packages' policies (upstream's
// RetryPolicy, service's WatchIntervals), under which a field left zero keeps
// its default, so that a policy can be given in part. It is cmp.Or applied
// field by field. T must be a struct whose fields are all exported; it panics
// otherwise, which the tests of each policy show at once.
func OrDefaults[T any](v, defaults T) T {
	out, d := reflect.ValueOf(&v).Elem(), reflect.ValueOf(defaults)
	for i := range out.NumField() {
		if f := out.Field(i); f.IsZero() {
			f.Set(d.Field(i))
		}
	}
	return v
}
