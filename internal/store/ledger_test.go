package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"redial/internal/testenv"
)

// The claim ledger as such, over both source shapes (and the ZSET shape
// with a payload hash, the callback plans).

type ledgerCase struct {
	name   string
	ledger func(s *Store) *Ledger
	// items the source is filled with; the last one is marked invited.
	items []string
}

// weirdItem is valid UTF-8 with everything JSON and Lua's cjson escape.
const weirdItem = `{"n":"a/b \"q\" \\ é <&> ` + "\u2028\t" + `"}`

var ledgerCases = []ledgerCase{
	{"list", func(s *Store) *Ledger { return s.QueueLedger("{q}", false) },
		[]string{"a", "\xff\xfe", weirdItem, "13800000000", "b"}},
	{"zset", func(s *Store) *Ledger { return s.ScheduleLedger() },
		[]string{"a", "\xff\xfe", weirdItem, "13800000000", "b"}},
	{"zset+payload", func(s *Store) *Ledger { return s.PlansLedger() },
		[]string{"acc/vm1", "acc/vm é", weirdItem, "acc/vm3", "acc/vm4"}},
}

// ledgerScore is the score addItems gives items[i]: long due, distinct, and
// not exactly printable by Lua's default number format.
func ledgerScore(i int) float64 { return 1_000_000_000 + float64(i) + 0.1234567 }

// addItems puts items into l's source, due (ZSET) in the order given.
func addItems(t *testing.T, s *Store, l *Ledger, items ...string) {
	t.Helper()
	ctx := context.Background()
	k := l.Keys("")
	switch {
	case l.Shape() == ShapeList:
		if _, err := s.PushNumbers(ctx, k.Source, items); err != nil {
			t.Fatal(err)
		}
	case k.Payload != "":
		for i, it := range items {
			if ok, err := s.CreatePlan(ctx, it, fmt.Sprintf(`{"n":%d}`, i), time.UnixMilli(int64(1000+i))); err != nil || !ok {
				t.Fatalf("create plan %q = %v, %v", it, ok, err)
			}
		}
	default:
		for i, it := range items {
			if err := s.AddScheduled(ctx, it, ledgerScore(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// claimAll claims n items of either shape, in claim order.
func claimAll(t *testing.T, l *Ledger, n int) []string {
	t.Helper()
	if l.Shape() == ShapeList {
		return claimN(t, l, n)
	}
	var out []string
	for len(out) < n {
		c, _, err := l.ClaimDue(context.Background(), n-len(out))
		if err != nil {
			t.Fatal(err)
		}
		if len(c) == 0 {
			t.Fatalf("%s: only %d of %d items due", l.Name(), len(out), n)
		}
		for _, x := range c {
			out = append(out, x.Member)
		}
	}
	return out
}

// prepare fills the source with c.items, claims them all for s's host and
// marks the last one invited.
func prepare(t *testing.T, s *Store, c ledgerCase) *Ledger {
	t.Helper()
	l := c.ledger(s)
	if err := l.EnsureHolder(context.Background()); err != nil {
		t.Fatal(err)
	}
	addItems(t, s, l, c.items...)
	if got := claimAll(t, l, len(c.items)); !reflect.DeepEqual(got, c.items) {
		t.Fatalf("claimed %q, want %q", got, c.items)
	}
	if err := l.Mark(context.Background(), c.items[len(c.items)-1]); err != nil {
		t.Fatal(err)
	}
	return l
}

var (
	atField  = regexp.MustCompile(`"at":"[^"]*"`)
	retryIDs = regexp.MustCompile(`^[0-9a-f]{16}\|`)
)

// dump is every key of r with its type and whole content, with the parts
// that differ between two runs of the same step (the wall clock in parked
// and ended records, the random id of retry members) masked.
func dump(t *testing.T, r *testenv.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := r.Client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	mask := func(v string) string { return atField.ReplaceAllString(v, `"at":"*"`) }
	// A score within a minute of now (unix s or ms) was "now" when written.
	now := time.Now()
	score := func(f float64) string {
		if math.Abs(f-float64(now.Unix())) < 60 || math.Abs(f-float64(now.UnixMilli())) < 60_000 {
			return "NOW"
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		typ := r.Client.Type(ctx, k).Val()
		var parts []string
		switch typ {
		case "list":
			for _, v := range r.Client.LRange(ctx, k, 0, -1).Val() {
				parts = append(parts, mask(v))
			}
		case "hash":
			for f, v := range r.Client.HGetAll(ctx, k).Val() {
				parts = append(parts, f+"="+mask(v))
			}
			sort.Strings(parts)
		case "set":
			parts = r.Client.SMembers(ctx, k).Val()
			sort.Strings(parts)
		case "zset":
			for _, z := range r.Client.ZRangeWithScores(ctx, k, 0, -1).Val() {
				parts = append(parts, retryIDs.ReplaceAllString(z.Member.(string), "ID|")+"@"+score(z.Score))
			}
			sort.Strings(parts)
		default:
			parts = []string{r.Client.Get(ctx, k).Val()}
		}
		out[k] = fmt.Sprintf("%s %q", typ, parts)
	}
	return out
}

func sameDump(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var diff []string
	for k, v := range want {
		if got[k] != v {
			diff = append(diff, fmt.Sprintf("%s:\n\tgot  %s\n\twant %s", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s:\n\tgot  %s\n\twant (none)", k, v))
		}
	}
	sort.Strings(diff)
	t.Fatalf("%s:\n%s", what, strings.Join(diff, "\n"))
}

// settleKind is one way of finishing a claim: as an op, and as the direct
// call. nil op: not for this ledger.
type settleKind struct {
	name   string
	op     func(s *Store, l *Ledger, m string) (SettleOp, bool)
	direct func(ctx context.Context, s *Store, l *Ledger, m string) error
}

// settleAt is a fixed time with sub-millisecond digits.
var settleAt = time.Unix(1_700_000_000, 123_456_000)

func writeBackPayload(l *Ledger, m string) string {
	if l.Keys("").Payload == "" {
		return ""
	}
	return `{"next":"` + m + `"}`
}

var settleKinds = []settleKind{
	{"ack",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) { return l.AckOp(m), true },
		func(ctx context.Context, s *Store, l *Ledger, m string) error { return l.Ack(ctx, m) }},
	{"return",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) { return l.ReturnOp(m, settleAt), true },
		func(ctx context.Context, s *Store, l *Ledger, m string) error { return l.Return(ctx, m, settleAt) }},
	{"invalid",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) { return l.InvalidOp(m, "bad "+m), true },
		func(ctx context.Context, s *Store, l *Ledger, m string) error { return l.Invalid(ctx, m, "bad "+m) }},
	{"interrupt",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) { return l.InterruptOp(m, "lost"), true },
		func(ctx context.Context, s *Store, l *Ledger, m string) error { return l.Interrupt(ctx, m, "lost") }},
	{"delay",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) {
			return l.DelayOp(m, m+"!", settleAt), l.Keys("").Retry != ""
		},
		func(ctx context.Context, s *Store, l *Ledger, m string) error {
			return l.Delay(ctx, m, m+"!", settleAt)
		}},
	{"write back",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) {
			return l.WriteBackOp(m, writeBackPayload(l, m), settleAt), l.Shape() == ShapeZSet
		},
		func(ctx context.Context, s *Store, l *Ledger, m string) error {
			return l.WriteBack(ctx, m, writeBackPayload(l, m), settleAt)
		}},
	{"end plan",
		func(s *Store, l *Ledger, m string) (SettleOp, bool) {
			js, _, err := s.Plan(context.Background(), m)
			return s.PlanEndOp(m, js, "answered"), err == nil && l.Keys("").Payload != ""
		},
		func(ctx context.Context, s *Store, l *Ledger, m string) error { return s.EndPlan(ctx, m, "answered") }},
}

// The notify spool keeps ops as JSON while Redis is away: an op that went
// through json.Marshal and json.Unmarshal is the same op and does what the
// direct call does, for every item, including one that is not UTF-8.
func TestSettleOpSurvivesAJSONRoundTrip(t *testing.T) {
	ra, rb := testenv.StartRedis(t), testenv.StartRedis(t)
	ctx := context.Background()
	for _, c := range ledgerCases {
		for _, kind := range settleKinds {
			direct, spooled := hostStore(ra, "n1"), hostStore(rb, "n1")
			ra.Client.FlushAll(ctx)
			rb.Client.FlushAll(ctx)
			la, lb := prepare(t, direct, c), prepare(t, spooled, c)
			applied := false
			for _, m := range c.items {
				op, ok := kind.op(spooled, lb, m)
				if !ok {
					break
				}
				applied = true
				b, err := json.Marshal(op)
				if err != nil {
					t.Fatalf("%s %s: marshal: %v", c.name, kind.name, err)
				}
				// Only strings that are not UTF-8 leave their own field.
				if hasRaw := strings.Contains(string(b), `"raw":`); hasRaw == utf8.ValidString(m) {
					t.Fatalf("%s %s of %q: JSON %s", c.name, kind.name, m, b)
				}
				var back SettleOp
				if err := json.Unmarshal(b, &back); err != nil {
					t.Fatalf("%s %s: unmarshal %s: %v", c.name, kind.name, b, err)
				}
				if !reflect.DeepEqual(back, op) {
					t.Fatalf("%s %s of %q: op after JSON round trip\n%+v\nwant\n%+v", c.name, kind.name, m, back, op)
				}
				errA := kind.direct(ctx, direct, la, m)
				errB := spooled.Settle(ctx, back)
				if errA != nil || errB != nil {
					t.Fatalf("%s %s of %q: direct %v, spooled %v", c.name, kind.name, m, errA, errB)
				}
				sameDump(t, fmt.Sprintf("%s %s of %q: spooled op vs direct call", c.name, kind.name, m), dump(t, rb), dump(t, ra))
			}
			if applied {
				k := lb.Keys("")
				if n := rb.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 {
					t.Fatalf("%s %s: %d claim keys left after settling every claim", c.name, kind.name, n)
				}
			}
		}
	}
}

// An op whose claim is gone (recovered by another node while the op waited
// in the spool, or already applied) fails with ErrClaimGone and changes
// nothing; replaying an applied op is harmless.
func TestSettleOfAGoneClaimChangesNothing(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	for _, c := range ledgerCases {
		for _, kind := range settleKinds {
			r.Client.FlushAll(ctx)
			s := hostStore(r, "n1")
			l := prepare(t, s, c)
			// Ops built while the claims were held, settled after another
			// node recovered them.
			var ops []SettleOp
			for _, m := range c.items {
				if op, ok := kind.op(s, l, m); ok {
					ops = append(ops, op)
				}
			}
			if len(ops) == 0 {
				continue
			}
			if _, err := c.ledger(hostStore(r, "n2")).Recover(ctx, "n1"); err != nil {
				t.Fatal(err)
			}
			before := dump(t, r)
			for i, op := range ops {
				err := s.Settle(ctx, op)
				if op.Force {
					// An end is forced past whoever holds the claim: it
					// ends the plan once, then finds it gone.
					if err != nil {
						t.Fatalf("%s %s of %q after recovery = %v", c.name, kind.name, c.items[i], err)
					}
					ended := dump(t, r)
					if err := s.Settle(ctx, op); !errors.Is(err, ErrPlanGone) {
						t.Fatalf("%s %s of %q replayed = %v, want ErrPlanGone", c.name, kind.name, c.items[i], err)
					}
					sameDump(t, fmt.Sprintf("%s %s of %q replayed", c.name, kind.name, c.items[i]), dump(t, r), ended)
					continue
				}
				if !errors.Is(err, ErrClaimGone) {
					t.Fatalf("%s %s of %q after recovery = %v, want ErrClaimGone", c.name, kind.name, c.items[i], err)
				}
				sameDump(t, fmt.Sprintf("%s %s after recovery", c.name, kind.name), dump(t, r), before)
			}
			// Claim what is back in the source again, settle, replay.
			for _, m := range claimAll(t, l, sourceLen(t, r, l)) {
				op, _ := kind.op(s, l, m)
				if err := s.Settle(ctx, op); err != nil {
					t.Fatalf("%s %s of %q = %v", c.name, kind.name, m, err)
				}
				applied := dump(t, r)
				err := s.Settle(ctx, op)
				want := ErrClaimGone
				if op.Force {
					want = ErrPlanGone
				}
				if !errors.Is(err, want) {
					t.Fatalf("%s %s of %q replayed = %v, want %v", c.name, kind.name, m, err, want)
				}
				sameDump(t, fmt.Sprintf("%s %s of %q replayed", c.name, kind.name, m), dump(t, r), applied)
			}
		}
	}
}

// sourceLen is how many items l's source holds.
func sourceLen(t *testing.T, r *testenv.Redis, l *Ledger) int {
	t.Helper()
	ctx := context.Background()
	k := l.Keys("")
	if l.Shape() == ShapeList {
		return int(r.Client.LLen(ctx, k.Source).Val())
	}
	return int(r.Client.ZCard(ctx, k.Source).Val())
}

func wantRecovered(l *Ledger, requeued, invited int) RecoverResult {
	if l.requeueInvited {
		return RecoverResult{Requeued: requeued, RequeuedInterrupted: invited}
	}
	return RecoverResult{Requeued: requeued, Interrupted: invited}
}

// SettleOwn takes a node's own leftovers without looking at its heartbeat;
// Recover refuses while the heartbeat key exists and leaves everything as
// it was.
func TestSettleOwnVersusRecover(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	for _, c := range ledgerCases {
		r.Client.FlushAll(ctx)
		dead, live := hostStore(r, "dead"), hostStore(r, "live")
		dl := prepare(t, dead, c)
		ll := c.ledger(live)
		if err := dead.Heartbeat(ctx, "dead", time.Minute); err != nil {
			t.Fatal(err)
		}
		before := dump(t, r)
		res, err := ll.Recover(ctx, "dead")
		if !errors.Is(err, ErrHostAlive) || res.Total() != 0 {
			t.Fatalf("%s: recover of a live host = %+v, %v", c.name, res, err)
		}
		sameDump(t, c.name+": refused recovery", dump(t, r), before)
		// Own leftovers are taken although the heartbeat is alive.
		res, err = dl.SettleOwn(ctx)
		if want := wantRecovered(dl, len(c.items)-1, 1); err != nil || res != want {
			t.Fatalf("%s: settle own = %+v, %v, want %+v", c.name, res, err, want)
		}
		k := dl.Keys("")
		if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 ||
			r.Client.SIsMember(ctx, k.Holders, "dead").Val() {
			t.Fatalf("%s: %d claim keys or the holder entry left after settle own", c.name, n)
		}
		// Nothing left: both find nothing to do.
		if res, err := dl.SettleOwn(ctx); err != nil || res.Total() != 0 {
			t.Fatalf("%s: second settle own = %+v, %v", c.name, res, err)
		}
		r.Client.Del(ctx, dead.AliveKey("dead"), dead.LegacyAliveKey("dead"))
		if res, err := ll.Recover(ctx, "dead"); err != nil || res.Total() != 0 {
			t.Fatalf("%s: recover of nothing = %+v, %v", c.name, res, err)
		}
		// Once the heartbeat is gone, Recover takes the claims.
		got := claimAll(t, dl, len(c.items)-boolInt(!dl.requeueInvited))
		if err := dl.Mark(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
		res, err = ll.Recover(ctx, "dead")
		if want := wantRecovered(dl, len(got)-1, 1); err != nil || res != want {
			t.Fatalf("%s: recover = %+v, %v, want %+v", c.name, res, err, want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A recovery of more claims than one script batch (100) runs several
// batches; two recoverers racing move every claim exactly once, never-dialed
// LIST claims keep their order and ZSET claims their exact score.
func TestRecoverMoreThanOneBatch(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const total = 350
	for _, c := range ledgerCases {
		r.Client.FlushAll(ctx)
		items := make([]string, total)
		for i := range items {
			items[i] = fmt.Sprintf("acc/m%03d", i)
		}
		dead := hostStore(r, "dead")
		dl := c.ledger(dead)
		dl.EnsureHolder(ctx)
		addItems(t, dead, dl, items...)
		if got := claimAll(t, dl, total); !reflect.DeepEqual(got, items) {
			t.Fatalf("%s: claim order %q", c.name, got)
		}
		marked := map[string]bool{}
		for i := 0; i < total; i += 7 {
			if err := dl.Mark(ctx, items[i]); err != nil {
				t.Fatal(err)
			}
			marked[items[i]] = true
		}
		var wg sync.WaitGroup
		results := make([]RecoverResult, 2)
		errs := make([]error, 2)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = c.ledger(hostStore(r, fmt.Sprint("live", i))).Recover(ctx, "dead")
			}()
		}
		wg.Wait()
		var sum RecoverResult
		for i, res := range results {
			if errs[i] != nil {
				t.Fatalf("%s: recoverer %d: %v", c.name, i, errs[i])
			}
			sum.Requeued += res.Requeued
			sum.Interrupted += res.Interrupted
			sum.RequeuedInterrupted += res.RequeuedInterrupted
		}
		if want := wantRecovered(dl, total-len(marked), len(marked)); sum != want {
			t.Fatalf("%s: recovered %+v, want %+v", c.name, sum, want)
		}
		k := dl.Keys("")
		if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 {
			t.Fatalf("%s: %d of the dead host's keys left", c.name, n)
		}
		seen := map[string]int{}
		for _, v := range lrange(t, r, k.Interrupted) {
			p := decodeParked(t, v)
			if !marked[p.Item] || p.Host != "dead" {
				t.Fatalf("%s: parked %+v", c.name, p)
			}
			seen[p.Item]++
		}
		var back []string
		if l := c.ledger(hostStore(r, "next")); l.Shape() == ShapeList {
			back = claimAll(t, l, int(r.Client.LLen(ctx, k.Source).Val()))
		} else {
			for _, z := range r.Client.ZRangeWithScores(ctx, k.Source, 0, -1).Val() {
				m := z.Member.(string)
				back = append(back, m)
				i, _ := strconv.Atoi(m[len("acc/m"):])
				if l.recoverNow {
					continue // due now, checked in callback_test.go
				}
				if z.Score != ledgerScore(i) {
					t.Fatalf("%s: %s back at %v, claimed at %v", c.name, m, z.Score, ledgerScore(i))
				}
			}
		}
		var want []string
		for _, it := range items {
			if !marked[it] || dl.requeueInvited {
				want = append(want, it)
			}
		}
		if dl.recoverNow {
			sort.Strings(back)
		}
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("%s: back in the source (in claim order) %d items %q\nwant %d %q", c.name, len(back), back, len(want), want)
		}
		for _, m := range back {
			seen[m]++
		}
		if len(seen) != total {
			t.Fatalf("%s: %d distinct items after recovery, want %d", c.name, len(seen), total)
		}
		for m, n := range seen {
			if n != 1 {
				t.Fatalf("%s: %s is in %d places", c.name, m, n)
			}
		}
	}
}

// :interrupted entries, whether a node parked them (Interrupt) or a
// recovery script did, are ParkedItem JSON with exactly item, reason, at
// and host.
func TestInterruptedEntriesAreParkedItems(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	items := []string{weirdItem, "13800000000", `["x",1]`, "", "acc/vm ü"}
	for _, c := range ledgerCases {
		if c.ledger(hostStore(r, "x")).requeueInvited {
			continue // plans never park
		}
		for _, how := range []string{"interrupt", "recover"} {
			r.Client.FlushAll(ctx)
			s := hostStore(r, "n1")
			l := c.ledger(s)
			addItems(t, s, l, items...)
			claimAll(t, l, len(items))
			before := time.Now().Add(-time.Second)
			for _, it := range items {
				if err := l.Mark(ctx, it); err != nil {
					t.Fatal(err)
				}
				if how == "interrupt" {
					if err := l.Interrupt(ctx, it, "call lost"); err != nil {
						t.Fatal(err)
					}
				}
			}
			if how == "recover" {
				if res, err := c.ledger(hostStore(r, "n2")).Recover(ctx, "n1"); err != nil || res.Interrupted != len(items) {
					t.Fatalf("%s: recover = %+v, %v", c.name, res, err)
				}
			}
			parked := lrange(t, r, l.Keys("").Interrupted)
			if len(parked) != len(items) {
				t.Fatalf("%s %s: %d parked, want %d", c.name, how, len(parked), len(items))
			}
			var got []string
			for _, v := range parked {
				var raw map[string]any
				if err := json.Unmarshal([]byte(v), &raw); err != nil {
					t.Fatalf("%s %s: entry %q is not JSON: %v", c.name, how, v, err)
				}
				if len(raw) != 4 {
					t.Fatalf("%s %s: entry %s has %d fields, want item, reason, at, host", c.name, how, v, len(raw))
				}
				for _, f := range []string{"item", "reason", "at", "host"} {
					if _, ok := raw[f].(string); !ok {
						t.Fatalf("%s %s: entry %s: %s is not a string", c.name, how, v, f)
					}
				}
				dec := json.NewDecoder(strings.NewReader(v))
				dec.DisallowUnknownFields()
				var p ParkedItem
				if err := dec.Decode(&p); err != nil {
					t.Fatalf("%s %s: entry %s: %v", c.name, how, v, err)
				}
				at, err := time.Parse(time.RFC3339, p.At)
				if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
					t.Fatalf("%s %s: entry %s: at %v, %v", c.name, how, v, at, err)
				}
				if p.Host != "n1" || p.Reason == "" || p.ItemBase64 != nil {
					t.Fatalf("%s %s: entry %+v", c.name, how, p)
				}
				if how == "recover" && !strings.Contains(p.Reason, "n1") {
					t.Fatalf("%s %s: reason %q does not name the node", c.name, how, p.Reason)
				}
				got = append(got, p.Item)
			}
			sort.Strings(got)
			want := append([]string(nil), items...)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s: parked items %q, want %q", c.name, how, got, want)
			}
		}
	}
}

// ClaimDue and ClaimBlocking refuse the other shape; Due reads scores in
// either unit.
func TestLedgerShapesAndClaimDue(t *testing.T) {
	s, _ := newDialerStore(t, "n1")
	ctx := context.Background()
	if _, _, err := s.QueueLedger("{q}", false).ClaimDue(ctx, 1); err == nil {
		t.Fatal("ClaimDue on a LIST ledger succeeded")
	}
	if _, _, err := s.PlansLedger().ClaimBlocking(ctx, time.Second); err == nil {
		t.Fatal("ClaimBlocking on a ZSET ledger succeeded")
	}
	if d := (Claim{Score: 1_700_000_000_123}).Due(true); !d.Equal(time.UnixMilli(1_700_000_000_123)) {
		t.Fatalf("ms due %v", d)
	}
	if d := (Claim{Score: 1_700_000_000.5}).Due(false); !d.Equal(time.Unix(1_700_000_000, 5e8)) {
		t.Fatalf("s due %v", d)
	}
	if d := (Claim{Score: math.Inf(-1)}).Due(false); !d.Before(time.Unix(0, 0)) {
		t.Fatalf("-inf due %v, want long before 1970", d)
	}
	if d := (Claim{Score: math.Inf(1)}).Due(false); !d.After(time.Unix(1e12, 0)) {
		t.Fatalf("+inf due %v, want far in the future", d)
	}
}
