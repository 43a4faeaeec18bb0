package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

func newBindingStore(t *testing.T) (*Store, *testenv.Redis) {
	t.Helper()
	r := testenv.StartRedis(t)
	return NewWithClient(r.Client, Config{Domain: "acme", Host: "A"}), r
}

func udpBinding(ext, node, source string, now time.Time, ttl time.Duration) Binding {
	contact := "sip:" + ext + "@" + source
	return Binding{ID: contact, Ext: ext, Node: node, Transport: "udp", Contact: contact, Source: source,
		UserAgent: "phone/1.0", Expires: now.Add(ttl), Registered: now}
}

func wsBinding(ext, node, source string, now time.Time, ttl time.Duration) Binding {
	return Binding{ID: source, Ext: ext, Node: node, Transport: "ws", Contact: "sip:abc@df7jal23ls0d.invalid;transport=ws",
		Source: source, UserAgent: "SIP.js/0.7.8", Expires: now.Add(ttl), Registered: now}
}

func bindingIDs(bs []Binding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Ext+"/"+b.ID)
	}
	return out
}

func sameBinding(a, b Binding) bool {
	return a.ID == b.ID && a.Ext == b.Ext && a.Node == b.Node && a.Transport == b.Transport && a.Contact == b.Contact &&
		a.Source == b.Source && a.UserAgent == b.UserAgent && a.Expires.Equal(b.Expires) && a.Registered.Equal(b.Registered)
}

func TestBindingKeysShareOneHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{Domain: "acme"})
	keys := []string{s.BindingsKey("1001"), s.BindingsKey("2002"), s.BindingExtsKey(), s.NodeBindingsKey("A"), s.NodeBindingsKey("node-b")}
	want := []string{"redial:{agents:acme}:binding:1001", "redial:{agents:acme}:binding:2002", "redial:{agents:acme}:exts",
		"redial:{agents:acme}:node:A", "redial:{agents:acme}:node:node-b"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	for _, k := range keys[1:] {
		if testenv.Slot(k) != testenv.Slot(keys[0]) {
			t.Fatalf("%s is in slot %d, %s in %d", k, testenv.Slot(k), keys[0], testenv.Slot(keys[0]))
		}
	}
}

// A binding is stored with everything a node needs to reach the agent, is
// found by any store of the domain, is renewed in place, and lives in keys
// that expire after it.
func TestPutBindingStoresAndRenews(t *testing.T) {
	s, r := newBindingStore(t)
	other := NewWithClient(r.Client, Config{Domain: "acme", Host: "B"})
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	u := udpBinding("1001", "A", "10.0.0.5:5062", now, time.Minute)
	w := wsBinding("1001", "A", "192.0.2.7:50123", now.Add(time.Second), time.Minute)
	for _, b := range []Binding{u, w} {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := other.Bindings(ctx, "1001", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !sameBinding(got[0], u) || !sameBinding(got[1], w) {
		t.Fatalf("Bindings = %+v\nwant %+v and %+v", got, u, w)
	}

	// As stored: JSON under the extension's hash, indexed under the node.
	raw, err := r.Client.HGet(ctx, "redial:{agents:acme}:binding:1001", w.ID).Result()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"id": w.ID, "ext": "1001", "node": "A", "transport": "ws", "source": w.Source,
		"contact": w.Contact, "user_agent": "SIP.js/0.7.8"} {
		if doc[k] != v {
			t.Errorf("stored %s = %v, want %v (%s)", k, doc[k], v, raw)
		}
	}
	if exp, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(doc["expires"])); !exp.Equal(w.Expires) {
		t.Errorf("stored expires = %v, want %v", doc["expires"], w.Expires)
	}
	if ok, _ := r.Client.SIsMember(ctx, "redial:{agents:acme}:exts", "1001").Result(); !ok {
		t.Error("1001 is not in the extensions set")
	}
	idx, _ := r.Client.HGetAll(ctx, "redial:{agents:acme}:node:A").Result()
	if len(idx) != 2 || idx["1001 "+w.ID] != `{"transport":"ws","source":"192.0.2.7:50123"}` {
		t.Errorf("node index = %v", idx)
	}
	for _, k := range []string{"redial:{agents:acme}:binding:1001", "redial:{agents:acme}:exts", "redial:{agents:acme}:node:A"} {
		ttl, err := r.Client.PTTL(ctx, k).Result()
		if err != nil || ttl < time.Minute || ttl > time.Minute+bindingKeyGrace+time.Second {
			t.Errorf("PTTL %s = %v, %v; want about a minute plus %v", k, ttl, err, bindingKeyGrace)
		}
	}

	// A REGISTER renewing the same contact replaces it.
	u2 := u
	u2.Expires, u2.Registered = now.Add(time.Hour), now.Add(2*time.Second)
	if err := s.PutBinding(ctx, u2); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Bindings(ctx, "1001", now)
	if len(got) != 2 || !sameBinding(got[1], u2) {
		t.Fatalf("after renewal Bindings = %+v", got)
	}
	if ttl, _ := r.Client.PTTL(ctx, "redial:{agents:acme}:binding:1001").Result(); ttl < time.Hour {
		t.Errorf("binding key TTL %v not pushed past the renewed expiry", ttl)
	}
}

func TestPutBindingRefusesBadBindings(t *testing.T) {
	s, r := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	good := udpBinding("1001", "A", "10.0.0.5:5060", now, time.Minute)
	for name, mod := range map[string]func(*Binding){
		"bad extension":  func(b *Binding) { b.Ext = "10 01" },
		"no id":          func(b *Binding) { b.ID = "" },
		"no node":        func(b *Binding) { b.Node = "" },
		"transport":      func(b *Binding) { b.Transport = "sctp" },
		"CRLF contact":   func(b *Binding) { b.Contact = "sip:a@b\r\nVia: evil" },
		"CRLF agent":     func(b *Binding) { b.UserAgent = "x\nEvil: 1" },
		"no expiry":      func(b *Binding) { b.Expires = time.Time{} },
		"long source":    func(b *Binding) { b.Source = strings.Repeat("1", 100) },
		"no contact":     func(b *Binding) { b.Contact = "" },
		"NUL in the id ": func(b *Binding) { b.ID = "a\x00b" },
	} {
		b := good
		mod(&b)
		if err := s.PutBinding(ctx, b); err == nil {
			t.Errorf("%s: PutBinding accepted %+v", name, b)
		}
	}
	if n, _ := r.Client.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("refused bindings wrote %d keys", n)
	}
}

// Expired bindings are not returned and are deleted by the read, with
// their index entries; the extension leaves the set with its last one.
func TestExpiredBindingsAreDroppedLazily(t *testing.T) {
	s, r := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	short := udpBinding("1001", "A", "10.0.0.5:5060", now, time.Minute)
	long := wsBinding("1001", "A", "10.0.0.6:40000", now, time.Hour)
	for _, b := range []Binding{short, long} {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(2 * time.Minute)
	got, err := s.Bindings(ctx, "1001", later)
	if err != nil || len(got) != 1 || got[0].ID != long.ID {
		t.Fatalf("Bindings two minutes later = %v, %v; want only the WebSocket one", bindingIDs(got), err)
	}
	if ok, _ := r.Client.HExists(ctx, s.BindingsKey("1001"), short.ID).Result(); ok {
		t.Fatal("the expired binding is still stored")
	}
	if ok, _ := r.Client.HExists(ctx, s.NodeBindingsKey("A"), "1001 "+short.ID).Result(); ok {
		t.Fatal("the expired binding is still in the node index")
	}
	all, err := s.AllBindings(ctx, now.Add(2*time.Hour))
	if err != nil || len(all) != 0 {
		t.Fatalf("AllBindings two hours later = %v, %v", bindingIDs(all), err)
	}
	for _, k := range []string{s.BindingsKey("1001"), s.BindingExtsKey(), s.NodeBindingsKey("A")} {
		if n, _ := r.Client.Exists(ctx, k).Result(); n != 0 {
			t.Errorf("%s still exists after its last binding expired", k)
		}
	}
}

func TestRemoveBinding(t *testing.T) {
	s, r := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	a := udpBinding("1001", "A", "10.0.0.5:5060", now, time.Minute)
	b := udpBinding("1001", "A", "10.0.0.6:5060", now, time.Minute)
	for _, x := range []Binding{a, b} {
		if err := s.PutBinding(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveBinding(ctx, "1001", a.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Bindings(ctx, "1001", now); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("after removing one: %v", bindingIDs(got))
	}
	if err := s.RemoveBinding(ctx, "1001", a.ID); err != nil {
		t.Fatalf("removing a removed binding: %v", err)
	}
	if err := s.RemoveBinding(ctx, "1001", b.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Client.DBSize(ctx).Result(); n != 0 {
		keys, _ := r.Client.Keys(ctx, "*").Result()
		t.Fatalf("keys left after removing every binding: %v", keys)
	}
}

// A closed WebSocket takes exactly its own bindings with it.
func TestRemoveBindingsBySource(t *testing.T) {
	s, _ := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	const sock = "192.0.2.7:50123"
	bs := []Binding{
		wsBinding("1001", "A", sock, now, time.Minute),
		wsBinding("1002", "A", sock, now, time.Minute),              // a second user on the same socket
		wsBinding("1003", "A", "192.0.2.7:50124", now, time.Minute), // another socket
		udpBinding("1004", "A", sock, now, time.Minute),             // same address, other transport
		wsBinding("1005", "B", sock, now, time.Minute),              // same address seen by another node
	}
	for _, b := range bs {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.RemoveBindingsBySource(ctx, "A", "ws", sock)
	if err != nil || n != 2 {
		t.Fatalf("RemoveBindingsBySource = %d, %v; want 2", n, err)
	}
	all, err := s.AllBindings(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := bindingIDs(all); !slices.Equal(got, []string{"1003/192.0.2.7:50124", "1004/sip:1004@" + sock, "1005/" + sock}) {
		t.Fatalf("left = %v", got)
	}
	if n, err := s.RemoveBindingsBySource(ctx, "A", "ws", sock); err != nil || n != 0 {
		t.Fatalf("second RemoveBindingsBySource = %d, %v", n, err)
	}
}

// A node's bindings go with it; a binding that moved to another node
// since stays, and the old node's index forgets it.
func TestRemoveNodeBindings(t *testing.T) {
	s, r := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	moved := udpBinding("1003", "A", "10.0.0.3:5060", now, time.Minute)
	for _, b := range []Binding{
		udpBinding("1001", "A", "10.0.0.1:5060", now, time.Minute),
		wsBinding("1002", "A", "10.0.0.2:40000", now, time.Minute),
		udpBinding("2001", "B", "10.0.1.1:5060", now, time.Minute),
		moved,
	} {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	moved.Node = "B" // the phone re-registered through node B
	if err := s.PutBinding(ctx, moved); err != nil {
		t.Fatal(err)
	}
	n, err := s.RemoveNodeBindings(ctx, "A")
	if err != nil || n != 2 {
		t.Fatalf("RemoveNodeBindings(A) = %d, %v; want 2", n, err)
	}
	all, _ := s.AllBindings(ctx, now)
	if got := bindingIDs(all); !slices.Equal(got, []string{"1003/" + moved.ID, "2001/sip:2001@10.0.1.1:5060"}) {
		t.Fatalf("left = %v", got)
	}
	if all[0].Node != "B" {
		t.Fatalf("moved binding's node = %q", all[0].Node)
	}
	if n, _ := r.Client.Exists(ctx, s.NodeBindingsKey("A")).Result(); n != 0 {
		idx, _ := r.Client.HGetAll(ctx, s.NodeBindingsKey("A")).Result()
		t.Fatalf("node A's index is left with %v", idx)
	}
	if n, err := s.RemoveNodeBindings(ctx, "B"); err != nil || n != 2 {
		t.Fatalf("RemoveNodeBindings(B) = %d, %v; want 2", n, err)
	}
}

// After a restart a node drops its WebSocket bindings (their sockets died
// with the old process) and keeps its UDP phones' and other nodes'.
func TestRemoveNodeSocketBindings(t *testing.T) {
	s, _ := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, b := range []Binding{
		udpBinding("1001", "A", "10.0.0.1:5060", now, time.Minute),
		wsBinding("1002", "A", "10.0.0.2:40000", now, time.Minute),
		wsBinding("1003", "B", "10.0.0.3:40000", now, time.Minute),
	} {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.RemoveNodeSocketBindings(ctx, "A"); err != nil || n != 1 {
		t.Fatalf("RemoveNodeSocketBindings(A) = %d, %v; want 1", n, err)
	}
	all, _ := s.AllBindings(ctx, now)
	var left []string
	for _, b := range all {
		left = append(left, b.Ext+"/"+b.Node+"/"+b.Transport)
	}
	if !slices.Equal(left, []string{"1001/A/udp", "1003/B/ws"}) {
		t.Fatalf("left = %v", left)
	}
}

// AllBindings lists every extension's live bindings, and forgets an
// extension whose hash expired as a key.
func TestAllBindings(t *testing.T) {
	s, r := newBindingStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, b := range []Binding{
		udpBinding("2001", "B", "10.0.1.1:5060", now, time.Minute),
		udpBinding("1001", "A", "10.0.0.1:5060", now, time.Minute),
		udpBinding("1002", "A", "10.0.0.2:5060", now, time.Second),
		udpBinding("1004", "A", "10.0.0.4:5060", now, time.Minute),
	} {
		if err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	r.Client.Del(ctx, s.BindingsKey("1004")) // as if its TTL ran out
	all, err := s.AllBindings(ctx, now.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := bindingIDs(all); !slices.Equal(got, []string{"1001/sip:1001@10.0.0.1:5060", "2001/sip:2001@10.0.1.1:5060"}) {
		t.Fatalf("AllBindings = %v", got)
	}
	exts, _ := r.Client.SMembers(ctx, s.BindingExtsKey()).Result()
	slices.Sort(exts)
	if !slices.Equal(exts, []string{"1001", "2001"}) {
		t.Fatalf("extensions set = %v", exts)
	}
}
