// Package validate is the one check of numbers, channel variables and
// other outsider text that every entry point applies at its edge: queue
// items, task and schedule configs, schedule members, lines, callback
// documents, the HTTP API and the CLI. One rule everywhere means a value
// the API accepts is one the queue accepts, and the reverse.
//
// Numbers (the callee, an extension, a caller ID number) are at most 64
// characters of ASCII: digits, letters, '*', '#', '.', '_' and '-', with
// '+' allowed only as the first character. A number starts with a digit,
// a letter, '+', '*' or '#', holds at least one digit or letter, and never
// contains "..". So "15557770001", "+4930123", "1001", "alice",
// "alice.smith_1-2" and "*86#" pass; "../../etc", "1001@evil", "a b",
// "1;x=y", "sip:1", a control character or anything non-ASCII does not.
// Every character allowed may stand in a SIP user part (the SIP layer
// escapes '#'), none of them can leave it, and none can name a folder.
//
// Channel variables: at most 256 names and 32 KiB of names and values in
// all; a name is 1 to 128 bytes of letters, digits, '_', '.' and '-' (so
// sip_h_<Header> always names a valid header); a value is at most 4 KiB
// and never holds CR, LF or NUL, which would let it write its own SIP
// header. origination_caller_id_number, when set, follows the number rule
// and sip_from_host must look like a host.
//
// SIP URIs (a dialplan sip target, a line's carrier URI) are sip: or
// sips: URIs of at most 512 bytes of printable ASCII with no space, '<',
// '>' or '"': sipgo writes them as they are into the request line and the
// To header, where a space, a control character or an angle bracket would
// end the URI early and let the rest write its own words or header.
//
// Errors name the field at fault and never quote more than a short prefix
// of what they refuse, so an error can go into a log line or a reason
// stored in Redis whatever was sent.
package validate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"redial/internal/logtext"
)

// Bounds of what an outsider may send.
const (
	// MaxNumberLen is the longest number, in characters (ASCII only, so
	// bytes).
	MaxNumberLen = 64
	// MaxNumbers is the most numbers one call or item may try in order.
	MaxNumbers = 32
	// MaxLineGroups is the most line groups one call may try in order.
	MaxLineGroups = 32
	// MaxNameLen bounds line group, context and dialplan names.
	MaxNameLen = 128
	// MaxRefLen bounds call_ref, contact_ref, campaign_ref and ids.
	MaxRefLen = 256
	// MaxVariables is the most channel variables one source may set.
	MaxVariables = 256
	// MaxVariableNameLen is the longest variable name, in bytes.
	MaxVariableNameLen = 128
	// MaxVariableValueLen is the longest variable value, in bytes.
	MaxVariableValueLen = 4096
	// MaxSIPURILen is the longest SIP URI, in bytes.
	MaxSIPURILen = 512
	// MaxVariablesBytes bounds the names and values of one source
	// together, so that a call's variables stay small in memory, in Redis
	// and in its CDRs however many calls are made.
	MaxVariablesBytes = 32 << 10
	// maxQuote is how much of a refused value an error quotes.
	maxQuote = 64
)

// Error is a refused value: Field names it (params.number[1],
// variables.sip_h_X-Evil), Msg says why.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fail(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// quote renders a refused value for an error: quoted, at most maxQuote
// bytes of it, its size noted when cut.
func quote(s string) string {
	if len(s) <= maxQuote {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuote]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// Number checks a callee number; the error names the field "number".
func Number(s string) error { return NumberField("number", s) }

// NumberField checks a number (see the package doc for the rule); the
// error names field.
func NumberField(field, s string) error {
	if s == "" {
		return fail(field, "empty")
	}
	if n := utf8.RuneCountInString(s); n > MaxNumberLen {
		return fail(field, "%d characters, at most %d", n, MaxNumberLen)
	}
	alnum := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			alnum = true
		case c == '*', c == '#':
		case c == '+' && i == 0:
		case c == '+':
			return fail(field, "%s: '+' only as the first character", quote(s))
		case c == '.' || c == '_' || c == '-':
			if i == 0 {
				return fail(field, "%s: may not start with %q", quote(s), c)
			}
			if c == '.' && s[i-1] == '.' {
				return fail(field, "%s: \"..\" not allowed", quote(s))
			}
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fail(field, "%s: character %q not allowed (allowed: digits, letters, * # . _ - and a leading +)", quote(s), r)
		}
	}
	if !alnum {
		return fail(field, "%s: no digit or letter", quote(s))
	}
	return nil
}

// Numbers checks the numbers of one call, tried in order: 1 to
// MaxNumbers of them, each a number; errors name field[i].
func Numbers(field string, list []string) error {
	if len(list) == 0 {
		return fail(field, "empty")
	}
	if len(list) > MaxNumbers {
		return fail(field, "%d numbers, at most %d", len(list), MaxNumbers)
	}
	for i, n := range list {
		if err := NumberField(fmt.Sprintf("%s[%d]", field, i), n); err != nil {
			return err
		}
	}
	return nil
}

// LineGroups checks the line groups of one call, tried in order: 1 to
// MaxLineGroups names, each non-empty text of at most MaxNameLen bytes.
func LineGroups(field string, groups []string) error {
	if len(groups) == 0 {
		return fail(field, "empty")
	}
	if len(groups) > MaxLineGroups {
		return fail(field, "%d groups, at most %d", len(groups), MaxLineGroups)
	}
	for i, g := range groups {
		f := fmt.Sprintf("%s[%d]", field, i)
		if g == "" {
			return fail(f, "empty")
		}
		if err := Text(f, g, MaxNameLen); err != nil {
			return err
		}
	}
	return nil
}

// HeaderValue checks text bound for a SIP header: no CR or LF (which
// would end the header and start another) and no NUL.
func HeaderValue(s string) error { return HeaderValueField("", s) }

// HeaderValueField is HeaderValue with the field named in the error.
func HeaderValueField(field, s string) error {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return fail(field, "contains CR/LF")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fail(field, "contains NUL")
	}
	return nil
}

// SIPURI checks a SIP URI that redial sends a request to (see the
// package doc for the rule); the error names field. The scheme is matched
// without regard to case, as RFC 3261 says; the rest of the URI (host,
// port, parameters) is left to the caller, which knows what it needs.
func SIPURI(field, s string) error {
	if s == "" {
		return fail(field, "empty")
	}
	if len(s) > MaxSIPURILen {
		return fail(field, "%d bytes, at most %d", len(s), MaxSIPURILen)
	}
	if err := HeaderValueField(field, s); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fail(field, "%s: character %q not allowed (a SIP URI is printable ASCII without spaces, < > or \")", quote(s), r)
		}
	}
	rest, ok := "", false
	for _, scheme := range []string{"sip:", "sips:"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			rest, ok = s[len(scheme):], true
		}
	}
	if !ok {
		if i := strings.IndexByte(s, ':'); i > 0 {
			return fail(field, "want a sip: URI, got scheme %s", quote(s[:i]))
		}
		return fail(field, "want a sip: URI, got %s", quote(s))
	}
	if rest == "" {
		return fail(field, "no host in %s", quote(s))
	}
	return nil
}

// EscapeURIUser percent-encodes what may not stand in a SIP URI's user
// part (RFC 3261 25.1: unreserved / escaped / user-unreserved), so that a
// number or caller ID holding '#', '@' or '>' stays inside its URI. With
// keepEscapes an existing %XX escape is kept as it is; without, '%' is
// escaped too. A string with nothing to escape (the usual number) is
// returned as it is, without a copy: this runs for every call.
func EscapeURIUser(s string, keepEscapes bool) string {
	i := 0
	for i < len(s) && userUnreserved(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case userUnreserved(c):
			b.WriteByte(c)
		case keepEscapes && c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// userUnreserved reports whether c may stand unescaped in a SIP URI's user
// part.
func userUnreserved(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Text checks a free-text value (a reference, a name): at most max
// bytes, and no CR, LF or NUL.
func Text(field, s string, max int) error {
	if len(s) > max {
		return fail(field, "%d bytes, at most %d", len(s), max)
	}
	return HeaderValueField(field, s)
}

// Ref checks call_ref, contact_ref, campaign_ref and similar references:
// Text of at most MaxRefLen bytes.
func Ref(field, s string) error { return Text(field, s, MaxRefLen) }

// Variables checks a set of channel variables; errors name
// "variables.<name>".
func Variables(vars map[string]string) error { return VariablesField("variables", vars) }

// VariablesField checks a set of channel variables (see the package doc
// for the rule); errors name field.<name>. When several are bad, the
// first in name order is reported, so the error does not change from one
// run to the next.
func VariablesField(field string, vars map[string]string) error {
	if len(vars) > MaxVariables {
		return fail(field, "%d names, at most %d", len(vars), MaxVariables)
	}
	names := make([]string, 0, len(vars))
	total := 0
	for k, v := range vars {
		names = append(names, k)
		total += len(k) + len(v)
	}
	slices.Sort(names)
	for _, k := range names {
		if err := VariableName(field, k); err != nil {
			return err
		}
		if err := variableValue(field+"."+k, k, vars[k]); err != nil {
			return err
		}
	}
	if total > MaxVariablesBytes {
		return fail(field, "%d bytes of names and values, at most %d", total, MaxVariablesBytes)
	}
	return nil
}

// VariableName checks one variable name; field is the variables object.
func VariableName(field, name string) error {
	if name == "" {
		return fail(field, "empty name")
	}
	if len(name) > MaxVariableNameLen {
		return fail(field, "name %s: %d bytes, at most %d", quote(name), len(name), MaxVariableNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '-' {
			continue
		}
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fail(field, "name %s: character %q not allowed (allowed: letters, digits, _ . -)", quote(name), r)
	}
	return nil
}

// VariableValue checks the value of variable name; field names it in
// the error (variables.<name>).
func VariableValue(field, name, value string) error { return variableValue(field, name, value) }

func variableValue(field, name, value string) error {
	if len(value) > MaxVariableValueLen {
		return fail(field, "%d bytes, at most %d", len(value), MaxVariableValueLen)
	}
	if err := HeaderValueField(field, value); err != nil {
		return err
	}
	switch name {
	case "origination_caller_id_number":
		// It becomes the From user part.
		if value != "" {
			if err := NumberField(field, value); err != nil {
				return err
			}
		}
	case "sip_from_host":
		if value != "" && !hostLike(value) {
			return fail(field, "%s is not a host name or address", quote(value))
		}
	}
	return nil
}

// hostLike accepts a host name, an IPv4 address or a bracketed IPv6
// address, optionally with a port: what may stand after '@' in a URI.
func hostLike(s string) bool {
	if len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte(".-:[]", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// MaxErrorLen bounds the message of an error built from outsider input
// (see Short).
const MaxErrorLen = 512

// Short bounds err's message to MaxErrorLen bytes, its full size noted:
// decoders quote keys and values they refuse, and their errors end up in
// logs, API answers and reasons stored in Redis. errors.Is and errors.As
// still see err.
func Short(err error) error {
	if err == nil || len(err.Error()) <= MaxErrorLen {
		return err
	}
	return &shortError{msg: Truncate(err.Error(), MaxErrorLen), err: err}
}

type shortError struct {
	msg string
	err error
}

func (e *shortError) Error() string { return e.msg }
func (e *shortError) Unwrap() error { return e.err }

// Truncate is logtext.Truncate cut at a character boundary, for values
// kept (in a CDR, a reason) rather than only logged: at most n bytes of s
// followed by its full size when s is longer.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return logtext.Truncate(s, n)
}
