package testenv

// Checks shared by the fuzz targets of every package that decodes input
// from outside: what an accepted value may contain, how short an error
// must stay, and running a decoder under a deadline.

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"redial/internal/validate"
)

// Limits of issue 9's one validation of numbers and variables
// (internal/validate): what a decoder accepts must stay within them.
const (
	fuzzMaxNumber   = 64
	fuzzMaxVarValue = 4 << 10
	// fuzzMaxReason bounds an error about outsider input: it becomes a
	// reason stored in Redis, a 400 body or a log line ("a short reason").
	fuzzMaxReason = 1 << 10
)

// FuzzQuote renders s for a failure message without flooding it.
func FuzzQuote(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", s[:80], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// FuzzRun runs fn and fails the test if it panics or does not return
// within 10 s (decoding must terminate on any input).
func FuzzRun(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var panicked any
	var stack []byte
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				panicked, stack = r, debug.Stack()
			}
		}()
		fn()
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("%s did not return within 10 s", what)
	}
	if panicked != nil {
		t.Fatalf("%s panicked: %v\n%s", what, panicked, stack)
	}
}

// FuzzNumberSafe checks an accepted number against issue 9's limits.
func FuzzNumberSafe(t *testing.T, what, n string) {
	t.Helper()
	if n == "" {
		t.Errorf("%s: accepted an empty number", what)
	}
	if len(n) > fuzzMaxNumber {
		t.Errorf("%s: accepted number %s of %d bytes; issue 9 validation (internal/validate) must refuse numbers longer than %d",
			what, FuzzQuote(n), len(n), fuzzMaxNumber)
	}
	if strings.ContainsAny(n, "\r\n\x00") {
		t.Errorf("%s: accepted number %s holding CR, LF or NUL; issue 9 validation (internal/validate) must refuse it", what, FuzzQuote(n))
	}
	// One rule at every entry point: what this decoder accepts, the API
	// and the queues accept too.
	if err := validate.Number(n); err != nil {
		t.Errorf("%s: accepted number %s that validate.Number refuses (%v): entry points check numbers differently", what, FuzzQuote(n), err)
	}
}

// FuzzVarsSafe checks accepted channel variables against issue 9's limits.
func FuzzVarsSafe(t *testing.T, what string, vars map[string]string) {
	t.Helper()
	for k, v := range vars {
		if strings.ContainsAny(k, "\r\n\x00") {
			t.Errorf("%s: accepted variable name %s holding CR, LF or NUL; issue 9 validation (internal/validate) must refuse it", what, FuzzQuote(k))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			t.Errorf("%s: accepted variable %s = %s holding CR, LF or NUL; issue 9 validation (internal/validate) must refuse it", what, FuzzQuote(k), FuzzQuote(v))
		}
		if len(v) > fuzzMaxVarValue {
			t.Errorf("%s: accepted variable %s of %d bytes; issue 9 validation (internal/validate) must refuse values over %d bytes",
				what, FuzzQuote(k), len(v), fuzzMaxVarValue)
		}
		if err := validate.VariableName("variables", k); err != nil {
			t.Errorf("%s: accepted a variable name that validate refuses: %v", what, err)
		}
		if err := validate.VariableValue("variables."+k, k, v); err != nil {
			t.Errorf("%s: accepted a variable value that validate refuses: %v", what, err)
		}
	}
}

// FuzzShortErr checks that err is non-empty and short enough to be kept
// as a reason.
func FuzzShortErr(t *testing.T, what string, err error) {
	t.Helper()
	msg := err.Error()
	if msg == "" {
		t.Fatalf("%s: empty error", what)
	}
	if len(msg) > fuzzMaxReason {
		t.Errorf("%s: error of %d bytes (%s); errors about outsider input must stay short (issue 9)", what, len(msg), FuzzQuote(msg))
	}
}

// FuzzJSONObject reports whether s is one syntactically valid JSON object,
// so that every error about it must name a field.
func FuzzJSONObject(s string) bool {
	t := strings.TrimLeft(s, " \t\r\n")
	return t != "" && t[0] == '{' && json.Valid([]byte(s))
}

// FuzzNamesField reports whether msg starts with one of the field paths
// roots ("params" matches "params: ", "params.limit: " and "params[0]...").
func FuzzNamesField(msg string, roots ...string) bool {
	for _, r := range roots {
		if strings.HasPrefix(msg, r+": ") || strings.HasPrefix(msg, r+".") || strings.HasPrefix(msg, r+"[") {
			return true
		}
	}
	return false
}
