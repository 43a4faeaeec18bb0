package store

import (
	"context"
	"strings"
	"testing"
)

// Issue 9: a 1 MB binary item became an 8.7 MB :invalid entry (escaped
// text and base64 both). It is stored once, whole, and its reason is
// bounded.
func TestParkedEntryStoresTheItemOnce(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(i*131 + i>>8) // every byte value, mostly not UTF-8
	}
	ctl := strings.Repeat("\x01<", 1<<19) // valid UTF-8, escaping would take 4 MB
	text := `{"params":{"number":"a<b>&c"}}`
	items := []string{string(bin), ctl, text}
	if _, err := s.PushNumbers(ctx, "{q}", items); err != nil {
		t.Fatal(err)
	}
	claimN(t, l, len(items))
	for _, it := range items {
		if err := l.Invalid(ctx, it, strings.Repeat("why ", 1<<18)); err != nil {
			t.Fatal(err)
		}
	}
	in := lrange(t, r, k.Invalid)
	if len(in) != 3 {
		t.Fatalf("%d invalid entries", len(in))
	}
	// LPUSH: the last parked is first.
	for i, want := range []string{text, ctl, string(bin)} {
		v := in[i]
		p := decodeParked(t, v)
		got := p.Item
		if p.ItemBase64 != nil {
			got = string(p.ItemBase64)
			if p.Item != "" {
				t.Errorf("entry %d: item stored twice", i)
			}
		}
		if got != want {
			t.Errorf("entry %d: item not kept byte for byte", i)
		}
		if limit := len(want)*3/2 + 2048; len(v) > limit {
			t.Errorf("entry %d: %d bytes for an item of %d (limit %d)", i, len(v), len(want), limit)
		}
		if len(p.Reason) > MaxParkedReason+32 || !strings.HasSuffix(p.Reason, "(1048576 bytes)") {
			t.Errorf("entry %d: reason of %d bytes: %.80q", i, len(p.Reason), p.Reason)
		}
	}
	if p := decodeParked(t, in[0]); p.ItemBase64 != nil || !strings.Contains(in[0], `a<b>&c`) {
		t.Errorf("text item not stored as text: %s", in[0])
	}
	if len(in[2]) > 1500000 {
		t.Errorf("1 MB binary item: entry of %d bytes", len(in[2]))
	}
}
