package store

// Fuzz targets for the codecs of what redial keeps in Redis and in its
// spool: settle ops (spooled behind their CDR while Redis is away), parked
// items (:invalid, :interrupted), ended plans and vmbox documents. `make
// test` runs them on their seed corpus; scripts/fuzz.sh (make chaos)
// fuzzes them.

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"redial/internal/testenv"
	"redial/internal/validate"
)

// FuzzSettleOpCodec: an op built from any bytes (queue items hold any
// bytes) comes back from its JSON byte for byte, its JSON is valid UTF-8
// on one line (a spool record), and JSON that decodes as an op re-encodes
// to an op equal to it.
func FuzzSettleOpCodec(f *testing.F) {
	st := NewWithClient(nil, Config{Host: "n1"})
	l := st.QueueLedger("{q}", false)
	seeds := []SettleOp{
		l.AckOp("13800000000"),
		l.ReturnOp(`{"params":{"number":"1001"}}`, time.Unix(1700000000, 0)),
		l.InvalidOp("\xff\xfe binary \x00 item", "number: \"x\" not allowed"),
		l.InterruptOp("1001\r\n", "node n1 stopped"),
		l.DelayOp("1001", `{"params":{"number":"1001","redial_attempt":1}}`, time.Unix(1700000060, 0)),
		st.PlanEndOp("acc/box", `{"number":"1"}`, "answered"),
		st.PlanEndOp("acc/box", "not json \xff", "plan unreadable"),
	}
	for _, op := range seeds {
		b, _ := json.Marshal(op)
		f.Add(string(b), op.Member, op.Value, op.Keys[0], op.Cap)
	}
	f.Add(`{"raw":{"nope":"eA=="}}`, "", "", "", 0)
	f.Add(`{"keys":["a","b","c","d","e","f","g"],"raw":{"keys.5":"/w=="},"cap":1e3}`, "\xc3\x28", "\u2028<&>", "{q}:processing:n1", -1)
	f.Add(`null`, strings.Repeat("\xff", 3000), strings.Repeat("x", 3000), "", 1<<40)
	f.Fuzz(func(t *testing.T, raw, member, value, key string, cap int) {
		// Build, encode, decode.
		op := l.InvalidOp(member, value)
		op.Value, op.Keys[0], op.Cap, op.Score = value, key, cap, member+value
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", op, err)
		}
		if !utf8.Valid(b) || bytes.ContainsAny(b, "\r\n") {
			t.Errorf("settle op JSON %s is not one line of UTF-8", testenv.FuzzQuote(string(b)))
		}
		var back SettleOp
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("settle op JSON %s does not decode: %v", testenv.FuzzQuote(string(b)), err)
		}
		if !reflect.DeepEqual(back, op) {
			t.Errorf("settle op round trip:\n %+v\n %+v", op, back)
		}

		// Decode stored JSON: errors are errors, never panics; an op that
		// decodes survives another round trip unchanged.
		var got SettleOp
		var derr error
		testenv.FuzzRun(t, "SettleOp.UnmarshalJSON", func() { derr = json.Unmarshal([]byte(raw), &got) })
		if derr != nil {
			return
		}
		b2, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("Marshal of decoded op %s: %v", testenv.FuzzQuote(raw), err)
		}
		var again SettleOp
		if err := json.Unmarshal(b2, &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("op decoded from %s does not survive a round trip: %v\n %+v\n %+v", testenv.FuzzQuote(raw), err, got, again)
		}
	})
}

// FuzzParkedItem: a parked item keeps the item's bytes exactly, whatever
// they are, with its reason (cut to MaxParkedReason) and host, and its
// JSON stays within a small multiple of the item's size (issue 9: a 1 MB
// binary item made an 8.7 MB :invalid entry).
func FuzzParkedItem(f *testing.F) {
	f.Add("13800000000", "number: empty", "n1", int64(1700000000))
	f.Add(`{"params":{"number":"1001\r\n"}}`, "params.number[0]: contains CR/LF", "n1", int64(0))
	f.Add("\xff\xfe\x00binary", "item: not UTF-8", "host-\xff", int64(-1))
	f.Add(strings.Repeat("\xc3", 3000), strings.Repeat("r", 3000), "", int64(253402300799))
	f.Fuzz(func(t *testing.T, item, reason, host string, at int64) {
		if at < -62135596800 || at > 253402300799 {
			return // outside the years RFC 3339 can write
		}
		js := parkedJSON(item, reason, host, time.Unix(at, 0))
		if !utf8.ValidString(js) {
			t.Errorf("parked item JSON %s is not UTF-8", testenv.FuzzQuote(js))
		}
		var p ParkedItem
		if err := json.Unmarshal([]byte(js), &p); err != nil {
			t.Fatalf("parked item %s does not decode: %v", testenv.FuzzQuote(js), err)
		}
		got := p.Item
		if p.ItemBase64 != nil {
			got = string(p.ItemBase64)
		}
		if got != item {
			t.Errorf("parked item lost its bytes: %s came back as %s", testenv.FuzzQuote(item), testenv.FuzzQuote(got))
		}
		if want := validate.Truncate(reason, MaxParkedReason); utf8.ValidString(want) && p.Reason != want || utf8.ValidString(host) && p.Host != host {
			t.Errorf("reason %s, host %s came back as %s, %s", testenv.FuzzQuote(reason), testenv.FuzzQuote(host), testenv.FuzzQuote(p.Reason), testenv.FuzzQuote(p.Host))
		}
		if limit := 3*len(item)/2 + 6*MaxParkedReason + 6*len(host) + 512; len(js) > limit {
			t.Errorf("parked item of %d bytes (reason %d, host %d) took %d bytes of JSON, more than %d", len(item), len(reason), len(host), len(js), limit)
		}
		if ts, err := time.Parse(time.RFC3339, p.At); err != nil || ts.Unix() != at {
			t.Errorf("at %d came back as %q (%v)", at, p.At, err)
		}
	})
}

// FuzzEndedPlan: the record PlanEndOp pushes onto the ended list decodes
// back to the field, the plan (its JSON, or as a JSON string when it was
// not JSON) and the reason.
func FuzzEndedPlan(f *testing.F) {
	st := NewWithClient(nil, Config{Host: "n1"})
	f.Add("acc/box", `{"account_id":"acc","vmbox_id":"box","number":"1001","schedule_s":[0,300],"attempt":1}`, "answered")
	f.Add("a/b", "not json", "plan unreadable: invalid character 'o' in literal null")
	f.Add("a/b", `{"x": "<&>\u2028", "y": [1, 2.50]}`, "3 attempts made, none answered")
	f.Add("\xff/\x00", "{\"x\":\"\xff\"}", "\xfe")
	f.Fuzz(func(t *testing.T, field, plan, reason string) {
		op := st.PlanEndOp(field, plan, reason)
		var e EndedPlan
		if err := json.Unmarshal([]byte(op.Value), &e); err != nil {
			t.Fatalf("ended plan record %s does not decode: %v", testenv.FuzzQuote(op.Value), err)
		}
		if utf8.ValidString(field) && e.Field != field || utf8.ValidString(reason) && e.Reason != reason || e.Host != "n1" {
			t.Errorf("ended plan %+v, want field %s reason %s", e, testenv.FuzzQuote(field), testenv.FuzzQuote(reason))
		}
		if _, err := time.Parse(time.RFC3339, e.At); err != nil {
			t.Errorf("at %q: %v", e.At, err)
		}
		if json.Valid([]byte(plan)) {
			var want, got bytes.Buffer
			json.Compact(&want, []byte(plan))
			json.Compact(&got, e.Plan)
			var a, b any
			if json.Unmarshal(want.Bytes(), &a) != nil || json.Unmarshal(got.Bytes(), &b) != nil || !reflect.DeepEqual(a, b) {
				t.Errorf("plan %s came back as %s", testenv.FuzzQuote(plan), testenv.FuzzQuote(string(e.Plan)))
			}
		} else if utf8.ValidString(plan) {
			var s string
			if err := json.Unmarshal(e.Plan, &s); err != nil || s != plan {
				t.Errorf("plan %s (not JSON) came back as %s", testenv.FuzzQuote(plan), testenv.FuzzQuote(string(e.Plan)))
			}
		}
	})
}

// FuzzVoicemailDoc: a vmbox document's messages array splits and joins
// back without losing a field, and an appended message reads back as
// written.
func FuzzVoicemailDoc(f *testing.F) {
	for _, s := range []string{
		`{"name":"box","owner_id":"u1","notify":{"callback":{"number":"1001"}},"messages":[{"media_id":"m1","folder":"new","timestamp":1700000000,"length":5000,"file":":SYNC_DOMAIN_DATA/vm/m1.wav","extra":{"x":1}},"junk",{"folder":5}]}`,
		`{"name":"box"}`, `{"messages":null}`, `{"messages":{"folder":"new"}}`, `null`, `[]`, `{}`,
		`{"messages":[` + strings.Repeat(`{"media_id":"m","folder":"new"},`, 100) + `{}]}`,
		"{\"messages\":[{\"media_id\":\"\xff\",\"timestamp\":1e300,\"length\":\"5\"}],\"n\":\"\u0000\"}",
		`{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	} {
		f.Add(s, "m2", "new", int64(1700000001))
	}
	f.Fuzz(func(t *testing.T, raw, mediaID, folder string, ts int64) {
		var doc map[string]json.RawMessage
		var list []json.RawMessage
		var err error
		testenv.FuzzRun(t, "splitMessages", func() { doc, list, err = splitMessages(raw) })
		if err != nil {
			if err.Error() == "" || len(err.Error()) > 200 {
				t.Errorf("splitMessages(%s): error %q", testenv.FuzzQuote(raw), err)
			}
			return
		}
		others := maps.Clone(doc)
		delete(others, "messages")
		msg := VoicemailMessage{MediaID: mediaID, Folder: folder, Timestamp: ts, Length: 1234, File: ":SYNC_DOMAIN_DATA/vm/x.wav"}
		entry, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		out, err := joinMessages(doc, append(slices.Clone(list), entry))
		if err != nil {
			t.Fatalf("joinMessages after splitMessages(%s): %v", testenv.FuzzQuote(raw), err)
		}
		doc2, list2, err := splitMessages(out)
		if err != nil {
			t.Fatalf("joined document %s does not split: %v", testenv.FuzzQuote(out), err)
		}
		if len(list2) != len(list)+1 {
			t.Fatalf("document %s: %d messages, then %d after one was appended", testenv.FuzzQuote(raw), len(list), len(list2))
		}
		for i := range list {
			if !fuzzSameJSON(list[i], list2[i]) {
				t.Errorf("message %d changed: %s -> %s", i, testenv.FuzzQuote(string(list[i])), testenv.FuzzQuote(string(list2[i])))
			}
		}
		delete(doc2, "messages")
		for k, v := range others {
			if !fuzzSameJSON(v, doc2[k]) {
				t.Errorf("field %q changed: %s -> %s", k, testenv.FuzzQuote(string(v)), testenv.FuzzQuote(string(doc2[k])))
			}
		}
		if len(doc2) != len(others) {
			t.Errorf("fields %v became %v", slices.Sorted(maps.Keys(others)), slices.Sorted(maps.Keys(doc2)))
		}
		var back VoicemailMessage
		if err := json.Unmarshal(list2[len(list)], &back); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(mediaID) && utf8.ValidString(folder) && !reflect.DeepEqual(back, msg) {
			t.Errorf("appended message %+v came back as %+v", msg, back)
		}
	})
}

// fuzzSameJSON reports whether two JSON texts hold the same value.
func fuzzSameJSON(a, b json.RawMessage) bool {
	var x, y any
	ea, eb := json.Unmarshal(a, &x), json.Unmarshal(b, &y)
	if ea != nil || eb != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}
