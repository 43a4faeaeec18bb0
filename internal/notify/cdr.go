package notify

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"redial/internal/store"
	"redial/internal/validate"
)

// MaxCDRBytes bounds the JSON of one CDR (the payload of its envelope).
// Variables and text fields come from outsiders (queue items, the API, IVR
// input); a CDR that would be larger has its longest values cut, each with
// its full size noted, rather than being dropped, and says so in the
// variable TruncatedVariable.
const MaxCDRBytes = 64 << 10

// maxCDRField bounds each text field of a CDR over MaxCDRBytes (numbers,
// references, line, cause).
const maxCDRField = 1024

// TruncatedVariable is the variable a cut CDR carries: how many values
// were cut or left out, and the limit.
const TruncatedVariable = "redial_cdr_truncated"

// Disposition is the CDR's disposition. Package call defines the values
// (call.Answered, call.Busy, ...) and aliases this type as Disposition;
// it lives here because call imports notify.
type Disposition string

// CDR is the record of one call attempt, published after every attempt
// (answered, failed or expired). Its JSON is the payload of the
// {"type":"cdr","payload":...} envelope integrators BRPOP from
// <prefix>:campaigns; the keys are fixed by DESIGN.md.
type CDR struct {
	// CDRID identifies this CDR; consumers drop a replayed duplicate by it.
	// PublishCDR fills it when empty.
	CDRID string `json:"cdr_id"`
	// CallRef is redial's reference of the call.
	CallRef string `json:"call_ref"`
	// ContactRef is the integrator's reference of the callee ("" when none).
	ContactRef string `json:"contact_ref"`
	// CampaignRef is the task or schedule config name.
	CampaignRef string `json:"campaign_ref"`
	// ClientNumber is the callee's number.
	ClientNumber string `json:"client_number"`
	// DialNumber is the number the dialer presented (caller ID).
	DialNumber string `json:"dial_number"`
	// Ext is the agent extension the call was connected to; nil (JSON null)
	// when no agent took it.
	Ext *string `json:"ext"`
	// Disposition is how the attempt ended.
	Disposition Disposition `json:"disposition"`
	// SIPCode is the final SIP response code (200 for answered calls).
	SIPCode int `json:"sip_code"`
	// HangupCause is the Q.850 cause name (FreeSWITCH naming).
	HangupCause string `json:"hangup_cause"`
	// Line is the line (trunk) the attempt used; "" when none was granted.
	Line string `json:"line"`
	// Attempt counts the attempts for this contact, from 1.
	Attempt int `json:"attempt"`
	// Start is when the attempt started.
	Start time.Time `json:"start"`
	// Answer is when the callee answered; nil (JSON null) when unanswered.
	Answer *time.Time `json:"answer"`
	// End is when the attempt ended.
	End time.Time `json:"end"`
	// Duration is End-Start in whole seconds.
	Duration int `json:"duration"`
	// Billsec is End-Answer in whole seconds (0 when unanswered).
	Billsec int `json:"billsec"`
	// HoldTime is the seconds the callee waited in a queue.
	HoldTime int `json:"hold_time"`
	// Variables are the call's channel variables worth reporting; an empty
	// map is written as {}.
	Variables map[string]string `json:"variables"`
	// Recording is the store path of the call's stereo recording (caller
	// left, agent or destination right); left out when it was not
	// recorded. GET /api/v1/calls/{call_ref}/recording serves it.
	Recording string `json:"recording,omitempty"`
}

// cdrWire is the CDR as written: times as RFC 3339 UTC strings with whole
// seconds (the unit of duration and billsec), variables never null.
type cdrWire struct {
	CDRID        string            `json:"cdr_id"`
	CallRef      string            `json:"call_ref"`
	ContactRef   string            `json:"contact_ref"`
	CampaignRef  string            `json:"campaign_ref"`
	ClientNumber string            `json:"client_number"`
	DialNumber   string            `json:"dial_number"`
	Ext          *string           `json:"ext"`
	Disposition  Disposition       `json:"disposition"`
	SIPCode      int               `json:"sip_code"`
	HangupCause  string            `json:"hangup_cause"`
	Line         string            `json:"line"`
	Attempt      int               `json:"attempt"`
	Start        string            `json:"start"`
	Answer       *string           `json:"answer"`
	End          string            `json:"end"`
	Duration     int               `json:"duration"`
	Billsec      int               `json:"billsec"`
	HoldTime     int               `json:"hold_time"`
	Variables    map[string]string `json:"variables"`
	// Recording is redial's own store path, bounded by how redial names
	// recordings, so bound never cuts it.
	Recording string `json:"recording,omitempty"`
}

func wireTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// MarshalJSON writes the CDR in its published shape: times in UTC as
// RFC 3339 with whole seconds, answer and ext null when absent, variables
// {} when empty. Decoding with encoding/json reads it back.
func (c CDR) MarshalJSON() ([]byte, error) {
	b, _ := c.encode(false)
	return b, nil
}

// encode returns the CDR's JSON (payload), and with envelope the whole of
// it, payload included, is its envelope on the campaigns list (store's
// AppendCDREnvelopeStart): one buffer for both, where wrapping the payload
// afterwards cost every CDR a copy of it.
func (c *CDR) encode(envelope bool) (b, payload []byte) {
	w := cdrWire{
		CDRID: c.CDRID, CallRef: c.CallRef, ContactRef: c.ContactRef, CampaignRef: c.CampaignRef,
		ClientNumber: c.ClientNumber, DialNumber: c.DialNumber, Ext: c.Ext,
		Disposition: c.Disposition, SIPCode: c.SIPCode, HangupCause: c.HangupCause,
		Line: c.Line, Attempt: c.Attempt,
		Start: wireTime(c.Start), End: wireTime(c.End),
		Duration: c.Duration, Billsec: c.Billsec, HoldTime: c.HoldTime,
		Variables: c.Variables, Recording: c.Recording,
	}
	if c.Answer != nil {
		a := wireTime(*c.Answer)
		w.Answer = &a
	}
	if w.Variables == nil {
		w.Variables = map[string]string{}
	}
	// sizeHint's slack holds the envelope too.
	b = make([]byte, 0, w.sizeHint())
	if envelope {
		b = store.AppendCDREnvelopeStart(b)
	}
	start := len(b)
	b = w.appendJSON(b)
	if len(b)-start > MaxCDRBytes {
		w.bound()
		b = w.appendJSON(b[:start])
	}
	end := len(b)
	if envelope {
		b = store.AppendCDREnvelopeEnd(b)
	}
	return b, b[start:end]
}

// sizeHint is the length of w's JSON when no string needs escaping: one
// allocation for the usual CDR.
func (w *cdrWire) sizeHint() int {
	n := 400 + len(w.CDRID) + len(w.CallRef) + len(w.ContactRef) + len(w.CampaignRef) + len(w.ClientNumber) +
		len(w.DialNumber) + len(w.Disposition) + len(w.HangupCause) + len(w.Line) + len(w.Start) + len(w.End) + len(w.Recording)
	if w.Ext != nil {
		n += len(*w.Ext)
	}
	if w.Answer != nil {
		n += len(*w.Answer)
	}
	for k, v := range w.Variables {
		n += len(k) + len(v) + 6
	}
	return n
}

// appendJSON appends w as encoding/json writes it (the tests hold it to
// that, byte for byte): a CDR is encoded for every call, and reflection
// made that a few percent of a node's CPU at thousands of calls a second
// (issue 14).
func (w *cdrWire) appendJSON(b []byte) []byte {
	b = append(b, `{"cdr_id":`...)
	b = appendJSONString(b, w.CDRID)
	b = append(b, `,"call_ref":`...)
	b = appendJSONString(b, w.CallRef)
	b = append(b, `,"contact_ref":`...)
	b = appendJSONString(b, w.ContactRef)
	b = append(b, `,"campaign_ref":`...)
	b = appendJSONString(b, w.CampaignRef)
	b = append(b, `,"client_number":`...)
	b = appendJSONString(b, w.ClientNumber)
	b = append(b, `,"dial_number":`...)
	b = appendJSONString(b, w.DialNumber)
	b = append(b, `,"ext":`...)
	b = appendJSONStringPtr(b, w.Ext)
	b = append(b, `,"disposition":`...)
	b = appendJSONString(b, string(w.Disposition))
	b = append(b, `,"sip_code":`...)
	b = strconv.AppendInt(b, int64(w.SIPCode), 10)
	b = append(b, `,"hangup_cause":`...)
	b = appendJSONString(b, w.HangupCause)
	b = append(b, `,"line":`...)
	b = appendJSONString(b, w.Line)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(w.Attempt), 10)
	b = append(b, `,"start":`...)
	b = appendJSONString(b, w.Start)
	b = append(b, `,"answer":`...)
	b = appendJSONStringPtr(b, w.Answer)
	b = append(b, `,"end":`...)
	b = appendJSONString(b, w.End)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(w.Duration), 10)
	b = append(b, `,"billsec":`...)
	b = strconv.AppendInt(b, int64(w.Billsec), 10)
	b = append(b, `,"hold_time":`...)
	b = strconv.AppendInt(b, int64(w.HoldTime), 10)
	b = append(b, `,"variables":`...)
	if w.Variables == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		names := make([]string, 0, len(w.Variables))
		for k := range w.Variables {
			names = append(names, k)
		}
		slices.Sort(names)
		for i, k := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, w.Variables[k])
		}
		b = append(b, '}')
	}
	if w.Recording != "" {
		b = append(b, `,"recording":`...)
		b = appendJSONString(b, w.Recording)
	}
	return append(b, '}')
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

// appendJSONString appends s quoted as encoding/json.Marshal quotes it:
// HTML-safe (<, > and & escaped), invalid UTF-8 as U+FFFD, U+2028 and
// U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// bound cuts w to at most MaxCDRBytes of JSON: text fields to maxCDRField
// bytes, then every variable value to the longest length that lets all of
// them fit (names in order), leaving out the names that do not fit even
// with empty values. The caller's map is not changed.
func (w *cdrWire) bound() {
	for _, f := range []*string{&w.CDRID, &w.CallRef, &w.ContactRef, &w.CampaignRef, &w.ClientNumber, &w.DialNumber,
		&w.HangupCause, &w.Line} {
		*f = validate.Truncate(*f, maxCDRField)
	}
	w.Disposition = Disposition(validate.Truncate(string(w.Disposition), maxCDRField))
	if w.Ext != nil {
		e := validate.Truncate(*w.Ext, maxCDRField)
		w.Ext = &e
	}
	vars := w.Variables
	w.Variables = map[string]string{}
	// appendJSON writes what json.Marshal would; json.Marshal(w) here
	// would move every CDR's cdrWire to the heap, cut or not.
	fixed := w.appendJSON(nil)
	// Room for the variables, less the note about them.
	budget := MaxCDRBytes - len(fixed) - 160
	names := make([]string, 0, len(vars))
	longest := 0
	for k, v := range vars {
		if k != TruncatedVariable {
			names = append(names, k)
			longest = max(longest, len(v))
		}
	}
	slices.Sort(names)
	// size is the JSON of the variables with values cut to n bytes: each
	// name and value quoted and escaped, a colon, a comma.
	size := func(keep []string, n int) int {
		total := 0
		for _, k := range keep {
			total += jsonLen(k) + jsonLen(validate.Truncate(vars[k], n)) + 2
		}
		return total
	}
	keep := names
	for len(keep) > 0 && size(keep, 0) > budget {
		keep = keep[:len(keep)*3/4]
	}
	// The longest cut that fits: size grows with n.
	lo, hi := 0, longest
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if size(keep, mid) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	cut := 0
	for _, k := range keep {
		v := vars[k]
		if len(v) > lo {
			cut++
		}
		w.Variables[k] = validate.Truncate(v, lo)
	}
	w.Variables[TruncatedVariable] = fmt.Sprintf("%d of %d values cut to %d bytes, %d left out: CDR limit %d bytes",
		cut, len(names), lo, len(names)-len(keep), MaxCDRBytes)
}

// jsonLen is the length of s as a JSON string.
func jsonLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b)
}

// NewID returns a random (version 4) UUID from crypto/rand, the form of
// cdr_id. Callers that want to log a CDR's id before publishing it set
// CDR.CDRID with it.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}
