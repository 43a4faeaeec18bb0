package dialplan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

func TestParseNamesTheField(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`{"type":"sip"}`, `entry "default:1" in cti_dialplan@default: uri: required`},
		{`{"type":"sip","uri":"http://x"}`, `uri: want a sip: URI, got scheme "http"`},
		{`{"type":"fax"}`, `type: "fax" is not one of`},
		{`{"type":7}`, `type: want string, got number`},
		{`{"type":"ivr"}`, `script: required`},
		{`not json`, `malformed JSON`},
		{`{}`, `type: required`},
	}
	for _, c := range cases {
		_, err := Parse("cti_dialplan@default", "default:1", c.raw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.raw, err, c.want)
		}
	}
	tg, err := Parse("cti_dialplan@default", "default:8888", `{"type":"sip","uri":"sip:8888@10.0.0.5:5060","extra":1}`)
	if err != nil || tg.URI != "sip:8888@10.0.0.5:5060" || tg.Type != TypeSIP {
		t.Fatalf("valid entry with an unknown field: %+v %v", tg, err)
	}
}

func TestResolveAgainstRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default"})
	ctx := context.Background()
	r.Client.HSet(ctx, "cti_dialplan@default", "default:8888", `{"type":"sip","uri":"sip:8888@127.0.0.1:5099"}`,
		"default:bad", `{"type":"sip","uri":5}`, "public:1", `{"type":"ivr","script":"main"}`)
	p := New(st)
	tg, err := p.Resolve(ctx, Destination{Extension: "8888", Dialplan: "XML", Context: "default"})
	if err != nil || tg.URI != "sip:8888@127.0.0.1:5099" {
		t.Fatalf("resolve: %+v %v", tg, err)
	}
	if tg, err := p.Resolve(ctx, Destination{Extension: "8888"}); err != nil || tg.Key != "default:8888" {
		t.Fatalf("context must default to default: %+v %v", tg, err)
	}
	if _, err := p.Resolve(ctx, Destination{Extension: "9999"}); !errors.Is(err, ErrNoRoute) || !strings.Contains(err.Error(), "default:9999") {
		t.Fatalf("missing entry: %v", err)
	}
	if _, err := p.Resolve(ctx, Destination{Extension: "8888", Dialplan: "LUA"}); err == nil || !strings.Contains(err.Error(), `"LUA"`) {
		t.Fatalf("unknown dialplan: %v", err)
	}
	if _, err := p.Resolve(ctx, Destination{Extension: "bad"}); err == nil || !strings.Contains(err.Error(), "uri: want string") {
		t.Fatalf("malformed: %v", err)
	}
	es, err := p.Entries(ctx)
	if err != nil || len(es) != 3 || es[1].Key != "default:bad" || es[1].Error == "" || es[0].Target == nil {
		t.Fatalf("entries: %+v %v", es, err)
	}
}

// Fuzzing found entries whose target wrote its own SIP header or broke
// the request line: sipgo wrote the URI as it was ("INVITE
// sip:8888@10.0.0.5\r\nX-Evil:1 SIP/2.0"), and a user with a NUL became a
// Request-URI user part.
func TestParseRefusesURIAndUserThatBreakSIP(t *testing.T) {
	const where = `dialplan: entry "default:1" in cti_dialplan@default: `
	cases := []struct{ raw, want string }{
		{`{"type":"sip","uri":"sip:8888@10.0.0.5\r\nX-Evil:1"}`, `uri: contains CR/LF`},
		{`{"type":"sip","uri":"sip:8888@10.0.0.5\u0000"}`, `uri: contains NUL`},
		{`{"type":"sip","uri":"sip:8888@10.0.0.5 SIP/2.0"}`, `uri: "sip:8888@10.0.0.5 SIP/2.0": character ' ' not allowed`},
		{`{"type":"sip","uri":"sip:8888@10.0.0.5\t"}`, `uri: "sip:8888@10.0.0.5\t": character '\t' not allowed`},
		{`{"type":"sip","uri":"sip:a@b>;tag=x"}`, `uri: "sip:a@b>;tag=x": character '>' not allowed`},
		{`{"type":"sip","uri":"sip:` + strings.Repeat("8", 600) + `@h"}`, `uri: 606 bytes, at most 512`},
		{`{"type":"sip","uri":"sip:"}`, `uri: no host in "sip:"`},
		{`{"type":"sip","uri":"SIP:8888@h"}`, `uri: "SIP:8888@h": write the scheme in lower case`},
		{`{"type":"user","user":"1001\u0000"}`, `user: "1001\x00": character '\x00' not allowed`},
		{`{"type":"user","user":"1001@evil"}`, `user: "1001@evil": character '@' not allowed`},
	}
	for _, c := range cases {
		_, err := Parse("cti_dialplan@default", "default:1", c.raw)
		if err == nil || !strings.HasPrefix(err.Error(), where+c.want) {
			t.Errorf("%.80s: got %v, want %s%s", c.raw, err, where, c.want)
		}
	}
	for _, raw := range []string{`{"type":"sip","uri":"sips:a@b"}`, `{"type":"sip","uri":"sips:8888@[2001:db8::1]:5061;transport=tls"}`,
		`{"type":"user","user":"alice.smith"}`, `{"type":"user","user":"+4930123"}`} {
		if _, err := Parse("cti_dialplan@default", "default:1", raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// A queue target names its queue (campaigns pace by its agents, inbound
// calls wait in it); without one it is refused, naming the field.
func TestParseQueueTarget(t *testing.T) {
	tg, err := Parse("cti_dialplan@default", "default:8888", `{"type":"queue","queue":"sales","moh":"ignored"}`)
	if err != nil || tg.Type != TypeQueue || tg.Queue != "sales" || tg.Key != "default:8888" {
		t.Fatalf("queue entry: %+v %v", tg, err)
	}
	for raw, want := range map[string]string{
		`{"type":"queue"}`:            `entry "default:8888" in cti_dialplan@default: queue: required for type "queue"`,
		`{"type":"queue","queue":""}`: `queue: required for type "queue"`,
		`{"type":"queue","queue":7}`:  `queue: want string, got number`,
	} {
		if _, err := Parse("cti_dialplan@default", "default:8888", raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", raw, err, want)
		}
	}
}

// Calls reuse a resolved entry for up to a second (no Redis read, no JSON
// decoding per call), and an edit of cti_dialplan applies after that.
func TestResolveCachesEntriesForASecond(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default"})
	ctx := context.Background()
	r.Client.HSet(ctx, "cti_dialplan@default", "default:7000", `{"type":"hangup"}`)
	p := New(st)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	if tg, err := p.Resolve(ctx, Destination{Extension: "7000"}); err != nil || tg.Type != TypeHangup {
		t.Fatalf("resolve: %+v %v", tg, err)
	}
	if _, err := p.Resolve(ctx, Destination{Extension: "7001"}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("missing entry: %v", err)
	}
	r.Client.HSet(ctx, "cti_dialplan@default", "default:7000", `{"type":"ivr","script":"main"}`, "default:7001", `{"type":"hangup"}`)
	now = now.Add(900 * time.Millisecond)
	if tg, err := p.Resolve(ctx, Destination{Extension: "7000"}); err != nil || tg.Type != TypeHangup {
		t.Fatalf("within the TTL the cached entry is used: %+v %v", tg, err)
	}
	if _, err := p.Resolve(ctx, Destination{Extension: "7001"}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("within the TTL the cached miss is used: %v", err)
	}
	now = now.Add(200 * time.Millisecond)
	if tg, err := p.Resolve(ctx, Destination{Extension: "7000"}); err != nil || tg.Type != TypeIVR || tg.Script != "main" {
		t.Fatalf("after the TTL the edit applies: %+v %v", tg, err)
	}
	if tg, err := p.Resolve(ctx, Destination{Extension: "7001"}); err != nil || tg.Type != TypeHangup || tg.Key != "default:7001" {
		t.Fatalf("after the TTL the new entry resolves: %+v %v", tg, err)
	}
	r.Client.HSet(ctx, "cti_dialplan@default", "default:7000", `{"type":"sip","uri":5}`)
	now = now.Add(2 * time.Second)
	for i := 0; i < 2; i++ { // the second from the cache: the same error
		if _, err := p.Resolve(ctx, Destination{Extension: "7000"}); err == nil || !strings.Contains(err.Error(), "uri: want string") {
			t.Fatalf("malformed edit, resolve %d: %v", i, err)
		}
	}
}
