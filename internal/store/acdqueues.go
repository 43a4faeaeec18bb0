package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Inbound queues (DESIGN.md "Inbound queues and call notifications").
//
//	cti_acd_queue@<domain>  HASH field = queue name, value =
//	                        {"params": {"agents": ["1001", ...] | [{"ext": "1001", "level": 1}, ...],
//	                                    "strategy", "ring_timeout_s", "wrapup_s", "max_wait_s",
//	                                    "max_len", "join_empty", "moh", "announce_position_s",
//	                                    "max_no_answer", "overflow": {"extension", "context"},
//	                                    "exit_key"},
//	                         "variables": {...}}
//
// Integrators write this hash like the other cti_ contracts: numbers may be
// written as strings ("20"), booleans as "true"/1, unknown fields are
// ignored, and an error names the queue, the key and the field.

// Queue strategies: how a waiting caller picks among the free agents of the
// lowest level that has any.
const (
	StrategyLongestIdle = "longest_idle"
	StrategyRingAll     = "ring_all"
	StrategyRoundRobin  = "round_robin"
	StrategyFewestCalls = "fewest_calls"
	StrategyRandom      = "random"
	StrategyTopDown     = "top_down"
)

// Strategies lists every strategy, in the order error messages name them.
var Strategies = []string{StrategyLongestIdle, StrategyRingAll, StrategyRoundRobin, StrategyFewestCalls, StrategyRandom, StrategyTopDown}

// Queue defaults, taken when a field is absent or null.
const (
	DefaultQueueStrategy    = StrategyLongestIdle
	DefaultQueueRingTimeout = 20 * time.Second
	DefaultQueueWrapup      = 5 * time.Second
	DefaultQueueMaxNoAnswer = 3
)

// maxQueueCount bounds every whole number of a queue (seconds, lengths,
// levels), so that a typo cannot overflow a duration.
const maxQueueCount = 1_000_000_000

// Queue is one entry of cti_acd_queue@<domain>.
type Queue struct {
	// Name is the hash field, what a {"type":"queue"} target names.
	Name string
	// Agents are the queue's agents in the order written (top_down and
	// round_robin follow it).
	Agents []QueueAgent
	// Strategy is one of Strategies.
	Strategy string
	// RingTimeout is how long one offer rings before the next agent.
	RingTimeout time.Duration
	// Wrapup is how long an agent stays free of calls after one ends.
	Wrapup time.Duration
	// MaxWait sends a caller to Overflow after this long; 0 is no limit.
	MaxWait time.Duration
	// MaxLen is the most callers waiting; 0 is no limit.
	MaxLen int
	// JoinEmpty lets callers wait while no agent could answer.
	JoinEmpty bool
	// MOH is the store path of the music on hold; "" for none.
	MOH string
	// AnnouncePosition is how often the caller hears their position; 0 is
	// never.
	AnnouncePosition time.Duration
	// MaxNoAnswer is how many offers in a row an agent may leave
	// unanswered before being paused; 0 never pauses.
	MaxNoAnswer int
	// Overflow is where a caller goes when MaxWait passes or nobody can
	// answer; nil when not configured.
	Overflow *QueueOverflow
	// ExitKey is the DTMF key (0-9, *, #) that takes a waiting caller to
	// Overflow; "" for none.
	ExitKey string
	// Variables are channel variables of the queue's calls.
	Variables map[string]string
}

// QueueAgent is one agent of a queue: lower levels are offered calls first.
type QueueAgent struct {
	Ext   string
	Level int
}

// QueueOverflow is a dialplan destination; Context "" is the default
// context.
type QueueOverflow struct {
	Extension string
	Context   string
}

// QueuesKey is the hash of queues, cti_acd_queue@<domain>.
func (s *Store) QueuesKey() string { return "cti_acd_queue@" + s.cfg.Domain }

// queueError names the queue and the key in front of a decoding error,
// bounded in size whatever the name and the value hold.
func (s *Store) queueError(name string, err error) error {
	return validate.Short(fmt.Errorf("store: queue %q in %s: %w", validate.Truncate(name, 64), s.QueuesKey(), err))
}

// validateQueueName checks a queue name: 1 to validate.MaxNameLen bytes of
// text without CR, LF or NUL.
func validateQueueName(name string) error {
	if name == "" {
		return &jsonfield.Error{Field: "name", Msg: "empty"}
	}
	return validate.Text("name", name, validate.MaxNameLen)
}

// Queue returns one queue; found is false when the hash has no such field.
// An entry that does not decode is an error naming the queue, the key and
// the field.
func (s *Store) Queue(ctx context.Context, name string) (q Queue, found bool, err error) {
	if err := validateQueueName(name); err != nil {
		return Queue{}, false, s.queueError(name, err)
	}
	raw, found, err := s.hgetFound(ctx, s.QueuesKey(), name)
	if err != nil || !found {
		return Queue{}, false, err
	}
	q, err = decodeQueue(name, raw)
	if err != nil {
		return Queue{}, false, s.queueError(name, err)
	}
	return q, true, nil
}

// Queues returns every queue that decodes, ordered by name, and in bad the
// error of every entry that does not (by hash field), so one bad queue
// never hides the others. err is set only when the hash could not be read.
func (s *Store) Queues(ctx context.Context) (queues []Queue, bad map[string]error, err error) {
	m, err := s.hgetAll(ctx, s.QueuesKey())
	if err != nil {
		return nil, nil, err
	}
	bad = map[string]error{}
	for name, raw := range m {
		err := validateQueueName(name)
		var q Queue
		if err == nil {
			q, err = decodeQueue(name, raw)
		}
		if err != nil {
			bad[name] = s.queueError(name, err)
			continue
		}
		queues = append(queues, q)
	}
	sort.Slice(queues, func(i, j int) bool { return queues[i].Name < queues[j].Name })
	return queues, bad, nil
}

// SetQueue writes one queue's JSON into cti_acd_queue@<domain> (CLI, demo,
// tests), refusing a value that would not decode.
func (s *Store) SetQueue(ctx context.Context, name, value string) error {
	if err := validateQueueName(name); err != nil {
		return s.queueError(name, err)
	}
	if _, err := decodeQueue(name, value); err != nil {
		return s.queueError(name, err)
	}
	if err := s.rdb.HSet(ctx, s.QueuesKey(), name, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", s.QueuesKey(), name, err)
	}
	return nil
}

// decodeQueue decodes one hash value; the error names the JSON field at
// fault, and the caller adds the queue and the key.
func decodeQueue(name, raw string) (Queue, error) {
	q := Queue{Name: name}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil {
		return q, &jsonfield.Error{Msg: "invalid JSON: " + err.Error()}
	}
	if top == nil {
		return q, &jsonfield.Error{Msg: "want a JSON object, got null"}
	}
	params, err := jsonfield.Object("params", top["params"])
	if err != nil {
		return q, err
	}
	if params == nil {
		return q, &jsonfield.Error{Field: "params", Msg: "missing"}
	}
	if q.Agents, err = queueAgents("params.agents", params["agents"]); err != nil {
		return q, err
	}
	if q.Strategy, err = jsonfield.String("params.strategy", params["strategy"], false); err != nil {
		return q, err
	}
	if q.Strategy == "" {
		q.Strategy = DefaultQueueStrategy
	}
	if !validStrategy(q.Strategy) {
		return q, &jsonfield.Error{Field: "params.strategy", Msg: fmt.Sprintf("%q is not a strategy (want %s)",
			validate.Truncate(q.Strategy, 32), strings.Join(Strategies, ", "))}
	}
	for _, d := range []struct {
		field string
		dst   *time.Duration
		def   time.Duration
	}{
		{"ring_timeout_s", &q.RingTimeout, DefaultQueueRingTimeout},
		{"wrapup_s", &q.Wrapup, DefaultQueueWrapup},
		{"max_wait_s", &q.MaxWait, 0},
		{"announce_position_s", &q.AnnouncePosition, 0},
	} {
		n, set, err := queueCount("params."+d.field, params[d.field])
		if err != nil {
			return q, err
		}
		*d.dst = d.def
		if set {
			*d.dst = time.Duration(n) * time.Second
		}
	}
	if q.RingTimeout == 0 {
		return q, &jsonfield.Error{Field: "params.ring_timeout_s", Msg: "want number >= 1, got 0"}
	}
	n, _, err := queueCount("params.max_len", params["max_len"])
	if err != nil {
		return q, err
	}
	q.MaxLen = n
	n, set, err := queueCount("params.max_no_answer", params["max_no_answer"])
	if err != nil {
		return q, err
	}
	q.MaxNoAnswer = DefaultQueueMaxNoAnswer
	if set {
		q.MaxNoAnswer = n
	}
	if q.JoinEmpty, err = jsonfield.Bool("params.join_empty", params["join_empty"], false); err != nil {
		return q, err
	}
	if q.MOH, err = jsonfield.String("params.moh", params["moh"], false); err != nil {
		return q, err
	}
	if err := validate.Text("params.moh", q.MOH, validate.MaxRefLen); err != nil {
		return q, err
	}
	if q.Overflow, err = queueOverflow("params.overflow", params["overflow"]); err != nil {
		return q, err
	}
	if q.ExitKey, err = jsonfield.String("params.exit_key", params["exit_key"], false); err != nil {
		return q, err
	}
	if q.ExitKey != "" && (len(q.ExitKey) != 1 || !strings.Contains("0123456789*#", q.ExitKey)) {
		return q, &jsonfield.Error{Field: "params.exit_key", Msg: fmt.Sprintf("want one of 0-9, * or #, got %q", validate.Truncate(q.ExitKey, 16))}
	}
	if q.ExitKey != "" && q.Overflow == nil {
		return q, &jsonfield.Error{Field: "params.exit_key", Msg: "needs params.overflow, where the key leads"}
	}
	if q.Variables, err = jsonfield.Variables("variables", top["variables"]); err != nil {
		return q, err
	}
	if err := validate.Variables(q.Variables); err != nil {
		return q, err
	}
	return q, nil
}

func validStrategy(s string) bool {
	for _, v := range Strategies {
		if v == s {
			return true
		}
	}
	return false
}

// queueAgents decodes the agents list: each element an extension (a bare
// number is taken as written) or {"ext", "level"} with level 1 by default.
// An extension listed twice is refused: its level would be ambiguous.
func queueAgents(field string, raw json.RawMessage) ([]QueueAgent, error) {
	if jsonfield.IsNull(raw) {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, jsonfield.WantGot(field, "array", raw)
	}
	agents := make([]QueueAgent, 0, len(list))
	seen := make(map[string]bool, len(list))
	for i, el := range list {
		f := field + "[" + strconv.Itoa(i) + "]"
		a := QueueAgent{Level: 1}
		obj, err := jsonfield.Object(f, el)
		if err == nil && obj != nil {
			if a.Ext, err = jsonfield.String(f+".ext", obj["ext"], true); err != nil {
				return nil, err
			}
			lvl, set, err := queueCount(f+".level", obj["level"])
			if err != nil {
				return nil, err
			}
			if set {
				if lvl < 1 {
					return nil, jsonfield.WantGot(f+".level", "number >= 1", obj["level"])
				}
				a.Level = lvl
			}
			f += ".ext"
		} else if a.Ext, err = jsonfield.String(f, el, true); err != nil {
			return nil, jsonfield.WantGot(f, "extension or {\"ext\", \"level\"}", el)
		}
		if err := ValidateExtension(a.Ext); err != nil {
			var je *jsonfield.Error
			if errors.As(err, &je) {
				return nil, &jsonfield.Error{Field: f, Msg: je.Msg}
			}
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if seen[a.Ext] {
			return nil, &jsonfield.Error{Field: f, Msg: fmt.Sprintf("%q listed twice", a.Ext)}
		}
		seen[a.Ext] = true
		agents = append(agents, a)
	}
	return agents, nil
}

// queueOverflow decodes {"extension", "context"}; nil when absent.
func queueOverflow(field string, raw json.RawMessage) (*QueueOverflow, error) {
	obj, err := jsonfield.Object(field, raw)
	if err != nil || obj == nil {
		return nil, err
	}
	var o QueueOverflow
	if o.Extension, err = jsonfield.String(field+".extension", obj["extension"], true); err != nil {
		return nil, err
	}
	if err := validate.NumberField(field+".extension", o.Extension); err != nil {
		return nil, err
	}
	if o.Context, err = jsonfield.String(field+".context", obj["context"], false); err != nil {
		return nil, err
	}
	if err := validate.Text(field+".context", o.Context, validate.MaxNameLen); err != nil {
		return nil, err
	}
	return &o, nil
}

// queueCount decodes a whole number >= 0, also written as a string ("20")
// or as 20.0; set is false when absent or null. (internal/lines has the
// same rule for limit/cps, but it imports this package.)
func queueCount(field string, raw json.RawMessage) (n int, set bool, err error) {
	if jsonfield.IsNull(raw) {
		return 0, false, nil
	}
	text := ""
	if num, ok := jsonfield.Number(raw); ok {
		text = num.String()
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false, jsonfield.WantGot(field, "number", raw)
		}
		text = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, false, jsonfield.WantGot(field, "number", raw)
	}
	switch {
	case f < 0:
		return 0, false, jsonfield.WantGot(field, "number >= 0", raw)
	case f > maxQueueCount:
		return 0, false, jsonfield.WantGot(field, "number <= 1000000000", raw)
	case f != float64(int(f)):
		return 0, false, jsonfield.WantGot(field, "whole number", raw)
	}
	return int(f), true, nil
}
