package dialplan

import (
	"context"
	"errors"
	"strings"
	"testing"

	"redial/internal/store"
	"redial/internal/testenv"
)

func TestParseNamesTheField(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`{"type":"sip"}`, `entry "default:1" in cti_dialplan@default: uri: required`},
		{`{"type":"sip","uri":"http://x"}`, `uri: "http://x" is not a sip: URI`},
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
