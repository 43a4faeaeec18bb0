package store

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// Every field of a queue is read as integrators write it (numbers as
// strings, booleans as "true"), absent fields take the documented
// defaults, and agents come as a plain list or as tiers.
func TestQueuesDecodeEveryFieldAndDefaults(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme"})
	ctx := context.Background()
	if s.QueuesKey() != "cti_acd_queue@acme" {
		t.Fatalf("QueuesKey = %q", s.QueuesKey())
	}
	entries := map[string]string{
		"sales": `{"params": {"agents": [{"ext": "1001", "level": 1}, {"ext": 1002, "level": "2"}, {"ext": "1003"}],
			"strategy": "ring_all", "ring_timeout_s": "15", "wrapup_s": 0, "max_wait_s": 120.0, "max_len": "10",
			"join_empty": "true", "moh": "local:moh/jazz.wav", "announce_position_s": 30, "max_no_answer": "0",
			"overflow": {"extension": 8888, "context": "after"}, "colour": "blue"},
			"variables": {"team": "sales", "prio": 2}, "extra": 1}`,
		"support": `{"params": {"agents": ["2001", 2002, "alice.b"]}}`,
		"empty":   `{"params": {}}`,
	}
	for name, v := range entries {
		if err := r.Client.HSet(ctx, s.QueuesKey(), name, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	queues, bad, err := s.Queues(ctx)
	if err != nil || len(bad) != 0 {
		t.Fatalf("Queues: bad %v, err %v", bad, err)
	}
	want := []Queue{
		{Name: "empty", Strategy: "longest_idle", RingTimeout: 20 * time.Second, Wrapup: 5 * time.Second, MaxNoAnswer: 3},
		{Name: "sales",
			Agents:   []QueueAgent{{"1001", 1}, {"1002", 2}, {"1003", 1}},
			Strategy: "ring_all", RingTimeout: 15 * time.Second, Wrapup: 0, MaxWait: 120 * time.Second, MaxLen: 10,
			JoinEmpty: true, MOH: "local:moh/jazz.wav", AnnouncePosition: 30 * time.Second, MaxNoAnswer: 0,
			Overflow: &QueueOverflow{Extension: "8888", Context: "after"}, Variables: map[string]string{"team": "sales", "prio": "2"}},
		{Name: "support", Agents: []QueueAgent{{"2001", 1}, {"2002", 1}, {"alice.b", 1}},
			Strategy: "longest_idle", RingTimeout: 20 * time.Second, Wrapup: 5 * time.Second, MaxNoAnswer: 3},
	}
	if !reflect.DeepEqual(queues, want) {
		t.Fatalf("Queues =\n%+v\nwant\n%+v", queues, want)
	}
	q, found, err := s.Queue(ctx, "sales")
	if err != nil || !found || !reflect.DeepEqual(q, want[1]) {
		t.Fatalf("Queue(sales) = %+v, %v, %v", q, found, err)
	}
	if _, found, err := s.Queue(ctx, "nope"); found || err != nil {
		t.Fatalf("Queue(nope) = %v, %v; want not found", found, err)
	}
	for _, strat := range Strategies {
		if err := s.SetQueue(ctx, "q-"+strat, `{"params": {"strategy": "`+strat+`"}}`); err != nil {
			t.Fatalf("SetQueue with strategy %s: %v", strat, err)
		}
		q, _, err := s.Queue(ctx, "q-"+strat)
		if err != nil || q.Strategy != strat {
			t.Fatalf("Queue(q-%s) = %+v, %v", strat, q, err)
		}
	}
}

// A bad entry is reported with the queue, the key and the field, and never
// hides the good ones; SetQueue refuses what would not decode.
func TestQueuesBadEntriesNamedByKeyAndField(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	cases := map[string]string{
		"strategy":   `{"params": {"strategy": "fastest"}}`,
		"ring":       `{"params": {"ring_timeout_s": "ten"}}`,
		"ring0":      `{"params": {"ring_timeout_s": 0}}`,
		"wrapup":     `{"params": {"wrapup_s": -1}}`,
		"maxwait":    `{"params": {"max_wait_s": 1.5}}`,
		"maxlen":     `{"params": {"max_len": [1]}}`,
		"join":       `{"params": {"join_empty": "maybe"}}`,
		"moh":        `{"params": {"moh": 7}}`,
		"announce":   `{"params": {"announce_position_s": 2e10}}`,
		"noanswer":   `{"params": {"max_no_answer": "x"}}`,
		"overflow":   `{"params": {"overflow": "8888"}}`,
		"overflowx":  `{"params": {"overflow": {"extension": "../x"}}}`,
		"agents":     `{"params": {"agents": "1001"}}`,
		"agentext":   `{"params": {"agents": ["1001", "a b"]}}`,
		"agentobj":   `{"params": {"agents": [{"ext": "1001", "level": 0}]}}`,
		"agentlevel": `{"params": {"agents": [{"ext": "1001", "level": "top"}]}}`,
		"agenttwice": `{"params": {"agents": ["1001", {"ext": "1001", "level": 2}]}}`,
		"agentkind":  `{"params": {"agents": [true]}}`,
		"noparams":   `{"variables": {}}`,
		"json":       `not json`,
		"vars":       `{"params": {}, "variables": {"sip_h_X": "a\r\nEvil: 1"}}`,
	}
	want := map[string]string{
		"strategy":   `store: queue "strategy" in cti_acd_queue@default: params.strategy: "fastest" is not a strategy (want longest_idle, ring_all, round_robin, fewest_calls, random, top_down)`,
		"ring":       `store: queue "ring" in cti_acd_queue@default: params.ring_timeout_s: want number, got "ten"`,
		"ring0":      `store: queue "ring0" in cti_acd_queue@default: params.ring_timeout_s: want number >= 1, got 0`,
		"wrapup":     `store: queue "wrapup" in cti_acd_queue@default: params.wrapup_s: want number >= 0, got -1`,
		"maxwait":    `store: queue "maxwait" in cti_acd_queue@default: params.max_wait_s: want whole number, got 1.5`,
		"maxlen":     `store: queue "maxlen" in cti_acd_queue@default: params.max_len: want number, got [1]`,
		"join":       `store: queue "join" in cti_acd_queue@default: params.join_empty: want bool, got "maybe"`,
		"moh":        `store: queue "moh" in cti_acd_queue@default: params.moh: want string, got 7`,
		"announce":   `store: queue "announce" in cti_acd_queue@default: params.announce_position_s: want number <= 1000000000, got 2e10`,
		"noanswer":   `store: queue "noanswer" in cti_acd_queue@default: params.max_no_answer: want number, got "x"`,
		"overflow":   `store: queue "overflow" in cti_acd_queue@default: params.overflow: want object, got "8888"`,
		"overflowx":  `store: queue "overflowx" in cti_acd_queue@default: params.overflow.extension:`,
		"agents":     `store: queue "agents" in cti_acd_queue@default: params.agents: want array, got "1001"`,
		"agentext":   `store: queue "agentext" in cti_acd_queue@default: params.agents[1]: character ' ' not allowed`,
		"agentobj":   `store: queue "agentobj" in cti_acd_queue@default: params.agents[0].level: want number >= 1, got 0`,
		"agentlevel": `store: queue "agentlevel" in cti_acd_queue@default: params.agents[0].level: want number, got "top"`,
		"agenttwice": `store: queue "agenttwice" in cti_acd_queue@default: params.agents[1].ext: "1001" listed twice`,
		"agentkind":  `store: queue "agentkind" in cti_acd_queue@default: params.agents[0]: want extension or {"ext", "level"}, got true`,
		"noparams":   `store: queue "noparams" in cti_acd_queue@default: params: missing`,
		"json":       `store: queue "json" in cti_acd_queue@default: invalid JSON:`,
		"vars":       `store: queue "vars" in cti_acd_queue@default: variables.sip_h_X:`,
	}
	for name, v := range cases {
		if err := r.Client.HSet(ctx, s.QueuesKey(), name, v).Err(); err != nil {
			t.Fatal(err)
		}
		err := s.SetQueue(ctx, name+"-set", v)
		if err == nil || !strings.HasPrefix(err.Error(), strings.Replace(want[name], `"`+name+`"`, `"`+name+`-set"`, 1)) {
			t.Errorf("SetQueue(%s) = %v; want %s", name, err, want[name])
		}
	}
	if err := r.Client.HSet(ctx, s.QueuesKey(), "good", `{"params": {"agents": ["1001"]}}`).Err(); err != nil {
		t.Fatal(err)
	}
	queues, bad, err := s.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(queues) != 1 || queues[0].Name != "good" || !reflect.DeepEqual(queues[0].Agents, []QueueAgent{{"1001", 1}}) {
		t.Fatalf("Queues = %+v; want only good", queues)
	}
	if got := slices.Collect(maps.Keys(bad)); len(got) != len(cases) {
		t.Fatalf("bad = %v; want every case", got)
	}
	for name, w := range want {
		if err := bad[name]; err == nil || !strings.HasPrefix(err.Error(), w) {
			t.Errorf("bad[%s] = %v; want prefix %s", name, err, w)
		}
		if _, found, err := s.Queue(ctx, name); found || err == nil || !strings.HasPrefix(err.Error(), w) {
			t.Errorf("Queue(%s) = %v, %v; want prefix %s", name, found, err, w)
		}
	}
	if n, _ := r.Client.HLen(ctx, s.QueuesKey()).Result(); n != int64(len(cases))+1 {
		t.Fatalf("SetQueue wrote refused entries: hash has %d fields", n)
	}
}
