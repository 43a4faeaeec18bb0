package call_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/testenv"
)

// collect reads sub until the ended event of ref arrives and returns every
// event of ref, in order.
func collect(t *testing.T, sub *call.EventSub, ref string, timeout time.Duration) []call.Event {
	t.Helper()
	var got []call.Event
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription closed; events so far: %v", types(got))
			}
			if ev.CallRef != ref {
				continue
			}
			got = append(got, ev)
			if ev.Type == call.EventEnded {
				return got
			}
		case <-deadline:
			t.Fatalf("no ended event for %s within %v; events so far: %v", ref, timeout, types(got))
		}
	}
}

func types(evs []call.Event) []call.EventType {
	out := make([]call.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func wantTypes(t *testing.T, got []call.Event, want ...call.EventType) {
	t.Helper()
	if fmt.Sprint(types(got)) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", types(got), want)
	}
}

// wantTypesRingingOptional is wantTypes for a call whose callee sends its
// 180 and 200 back to back (the SIPp UAS does): sipgo hands each response
// to its transaction on a goroutine of its own, so under load the 200 can
// overtake the 180, which is then dropped, and ringing is not seen. Every
// other event must be there, in order.
func wantTypesRingingOptional(t *testing.T, got []call.Event, want ...call.EventType) {
	t.Helper()
	if !slices.Contains(types(got), call.EventRinging) {
		want = slices.DeleteFunc(slices.Clone(want), func(e call.EventType) bool { return e == call.EventRinging })
	}
	wantTypes(t, got, want...)
}

func request(ref, number string, ext string) call.Request {
	return call.Request{Numbers: []string{number}, LineGroups: []string{"g1"}, CallRef: ref,
		ContactRef: "contact-" + ref, CampaignRef: "camp",
		Destination: dialplan.Destination{Extension: ext, Dialplan: "XML", Context: "default"}}
}

// A subscriber sees an answered call's life in order, each event carrying
// the call's references, and ended carrying the CDR's disposition.
func TestEventsOfAnsweredCall(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r)
	sub := n.calls.Subscribe(16)
	defer sub.Close()

	start := time.Now().UTC()
	out, err := n.calls.Place(context.Background(), request("ev-1", "15551240001", "8888"))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Connected || out.Disposition != call.Answered {
		t.Fatalf("outcome: %+v", out)
	}
	// Place returns after Done, and ended is published before Done: every
	// event is already buffered.
	got := collect(t, sub, "ev-1", time.Second)
	wantTypesRingingOptional(t, got, call.EventCreated, call.EventRinging, call.EventAnswered, call.EventEnded)
	for i, ev := range got {
		if ev.CampaignRef != "camp" || ev.ContactRef != "contact-ev-1" || ev.Time.Location() != time.UTC ||
			ev.Time.Before(start.Add(-time.Second)) || (i > 0 && ev.Time.Before(got[i-1].Time)) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if i > 0 && (ev.Number != "15551240001" || ev.Line != "l1" || ev.Attempt != 1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	end := got[len(got)-1]
	if end.Disposition != call.Answered || end.SIPCode != 200 || end.HangupCause != "NORMAL_CLEARING" {
		t.Fatalf("ended: %+v", end)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := carrier.Wait(ctx); err != nil {
		t.Fatalf("sipp: %v\n%s", err, carrier.Output())
	}
}

// A call bridged to a SIP destination also reports bridged; a busy callee
// goes from created to ended with BUSY.
func TestEventsOfBridgedAndBusyCalls(t *testing.T) {
	r := testenv.StartRedis(t)
	// The callee hangs up 1.5 s after answering: time enough for the
	// destination to answer first, even on a loaded machine.
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "1500"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	busy := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setLine(t, r, "b1", "gb", "sip:"+busy.Addr)
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r)
	sub := n.calls.Subscribe(32)
	defer sub.Close()

	if _, err := n.calls.Place(context.Background(), request("ev-2", "15551240002", "8888")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, sub, "ev-2", time.Second)
	wantTypesRingingOptional(t, got, call.EventCreated, call.EventRinging, call.EventAnswered, call.EventBridged, call.EventEnded)
	if end := got[len(got)-1]; end.Disposition != call.Answered {
		t.Fatalf("ended: %+v", end)
	}

	req := request("ev-3", "15551240003", "8888")
	req.LineGroups = []string{"gb"}
	if _, err := n.calls.Place(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got = collect(t, sub, "ev-3", time.Second)
	wantTypes(t, got, call.EventCreated, call.EventEnded)
	if end := got[1]; end.Disposition != call.Busy || end.SIPCode != 486 || end.Line != "b1" || end.Attempt != 1 {
		t.Fatalf("ended: %+v", end)
	}
}

// A subscriber that never reads does not hold up calls: with its one-event
// buffer full, the call still runs to its end, and every event it missed
// is counted, on the subscription and in redial_call_events_dropped_total.
func TestSlowSubscriberDoesNotDelayCalls(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r)
	slow := n.calls.Subscribe(1)
	defer slow.Close()
	fast := n.calls.Subscribe(16)
	defer fast.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := n.calls.Place(ctx, request("ev-4", "15551240004", "8888"))
	if err != nil {
		t.Fatal(err)
	}
	// Had the bus waited for the slow subscriber, the call would have been
	// stuck at its second event until ctx cancelled it.
	if !out.Connected || out.Disposition != call.Answered {
		t.Fatalf("outcome: %+v", out)
	}
	all := collect(t, fast, "ev-4", time.Second)
	if got, want := slow.Dropped(), uint64(len(all)-1); got != want {
		t.Fatalf("slow subscriber dropped %d, want %d", got, want)
	}
	if got, _ := testenv.Metric(t, n.registry, "redial_call_events_dropped_total", nil); got != float64(len(all)-1) {
		t.Fatalf("redial_call_events_dropped_total = %v, want %d", got, len(all)-1)
	}
	if fast.Dropped() != 0 {
		t.Fatalf("fast subscriber dropped %d", fast.Dropped())
	}
	// The one event that fit is the first.
	if ev := <-slow.C; ev.Type != call.EventCreated || ev.CallRef != "ev-4" {
		t.Fatalf("slow subscriber's event: %+v", ev)
	}
	slow.Close()
	if _, ok := <-slow.C; ok {
		t.Fatalf("C not closed by Close")
	}
	slow.Close() // idempotent
}

// A call outlives the context of whoever originated it (an HTTP request):
// Originate's ctx ending does not hang the call up.
func TestCallOutlivesOriginateContext(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8889", `{"type":"hangup"}`)
	n := startNode(t, r)
	sub := n.calls.Subscribe(16)
	defer sub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	c, err := n.calls.Originate(ctx, request("ev-5", "15551240005", "8889"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("call did not end")
	}
	if out := c.Outcome(); !out.Connected || out.Disposition != call.Answered {
		t.Fatalf("outcome after the originator's ctx ended: %+v", out)
	}
	wantTypesRingingOptional(t, collect(t, sub, "ev-5", time.Second), call.EventCreated, call.EventRinging, call.EventAnswered, call.EventEnded)
}

// A callee that rings and never answers is seen ringing: the events say so
// whenever a 180 arrives on its own.
func TestEventsOfRingingCall(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_ring_noanswer.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r)
	sub := n.calls.Subscribe(16)
	defer sub.Close()
	req := request("ev-ring", "15551240009", "8888")
	req.Variables = map[string]string{"originate_timeout": "1"}
	out, err := n.calls.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Answered {
		t.Fatalf("outcome: %+v", out)
	}
	wantTypes(t, collect(t, sub, "ev-ring", time.Second), call.EventCreated, call.EventRinging, call.EventEnded)
}
