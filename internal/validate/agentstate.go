package validate

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxPauseReasonLen is the longest reason of a paused agent, in characters.
const MaxPauseReasonLen = 64

// AgentState checks a state an agent's queue state may be set to by hand
// (the API, the CLI, the agent page): "available" and "logged_out" take no
// reason, "paused" needs one of 1 to MaxPauseReasonLen printable
// characters. The states calls drive (ringing, on_call, wrapup) are
// refused. Errors name the field.
func AgentState(state, reason string) error {
	switch state {
	case "available", "logged_out":
		if reason != "" {
			return errors.New("reason: only a paused agent has one")
		}
		return nil
	case "paused":
	default:
		return fmt.Errorf("state: %q cannot be set (want available, paused or logged_out)", Truncate(state, 32))
	}
	if reason == "" {
		return errors.New("reason: a paused agent needs one")
	}
	if !utf8.ValidString(reason) {
		return errors.New("reason: not UTF-8")
	}
	n := 0
	for _, c := range reason {
		n++
		if !unicode.IsPrint(c) {
			return fmt.Errorf("reason: character %q not printable", c)
		}
	}
	if n > MaxPauseReasonLen {
		return fmt.Errorf("reason: %d characters, at most %d", n, MaxPauseReasonLen)
	}
	return nil
}
