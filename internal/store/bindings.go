package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/validate"
)

// Agent registrations (bindings), so that every node can reach every agent
// wherever it registered. Every key of a domain shares the hash slot
// {agents:<domain>}, so one script can touch a binding and its indexes in
// Redis Cluster:
//
//	redial:{agents:<domain>}:binding:<ext>  HASH field = binding id, value = binding JSON
//	                                        {"id","ext","node","transport","contact","source",
//	                                         "user_agent","expires","registered"} (times RFC 3339)
//	redial:{agents:<domain>}:exts           SET of extensions that have (or lately had) a binding
//	redial:{agents:<domain>}:node:<node>    HASH field = "<ext> <id>", value = {"transport","source"}:
//	                                        the bindings made through node, so that a node's
//	                                        bindings and a closed WebSocket's are found without
//	                                        reading every binding of the domain
//
// A binding id is the WebSocket's remote address for ws/wss (one browser, one
// socket) and the Contact URI otherwise. Expiry is checked against the
// reader's clock; expired bindings are deleted lazily by whoever reads them.
// The indexes may hold entries whose binding expired or moved to another
// node: readers check the binding itself and drop such entries. Every key's
// TTL is pushed past the expiry of everything it holds (plus
// bindingKeyGrace), so a domain nobody reads any more leaves nothing behind.

// bindingKeyGrace is how long the binding keys outlive the latest expiry
// written into them: room for nodes whose clocks disagree a little.
const bindingKeyGrace = 10 * time.Minute

// Bounds of the text a binding holds.
const (
	maxBindingID       = validate.MaxSIPURILen
	maxBindingSource   = 64
	maxBindingUA       = 256
	maxBindingNodeName = validate.MaxNameLen
)

// Binding is one registration of an agent.
type Binding struct {
	// ID tells the bindings of one extension apart: for ws/wss the Source,
	// else the Contact URI.
	ID  string
	Ext string
	// Node is the node that took the REGISTER, the one that reaches the
	// agent (a WebSocket ends there).
	Node string
	// Transport is "udp", "tcp", "ws" or "wss".
	Transport string
	// Contact is the Contact URI the agent registered.
	Contact string
	// Source is the "ip:port" the REGISTER came from; for ws/wss the
	// socket's remote address, by which requests go back down the socket.
	Source string
	// UserAgent is the agent's User-Agent header, cleaned and shortened.
	UserAgent string
	// Expires is when the binding ends unless renewed.
	Expires time.Time
	// Registered is when the binding was last written.
	Registered time.Time
}

// bindingJSON is a binding as stored.
type bindingJSON struct {
	ID         string    `json:"id"`
	Ext        string    `json:"ext"`
	Node       string    `json:"node"`
	Transport  string    `json:"transport"`
	Contact    string    `json:"contact"`
	Source     string    `json:"source"`
	UserAgent  string    `json:"user_agent"`
	Expires    time.Time `json:"expires"`
	Registered time.Time `json:"registered"`
}

// nodeIndexEntry is the value of one field of a node index.
type nodeIndexEntry struct {
	Transport string `json:"transport"`
	Source    string `json:"source"`
}

// BindingsKey is the hash of the bindings of one extension.
func (s *Store) BindingsKey(ext string) string {
	return "redial:{agents:" + s.cfg.Domain + "}:binding:" + ext
}

// BindingExtsKey is the set of extensions with bindings.
func (s *Store) BindingExtsKey() string { return "redial:{agents:" + s.cfg.Domain + "}:exts" }

// NodeBindingsKey is the index of the bindings made through node.
func (s *Store) NodeBindingsKey(node string) string {
	return "redial:{agents:" + s.cfg.Domain + "}:node:" + node
}

// nodeIndexField names a binding in a node index. An extension holds no
// space, so the first space ends it whatever the id holds.
func nodeIndexField(ext, id string) string { return ext + " " + id }

// validTransports are the transports a binding may name.
var validTransports = map[string]bool{"udp": true, "tcp": true, "ws": true, "wss": true}

// checkBinding refuses a binding that could not be stored or used: its
// text ends up in SIP headers, so no CR, LF or NUL anywhere.
func checkBinding(b Binding) error {
	if err := ValidateExtension(b.Ext); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"id", b.ID, maxBindingID}, {"node", b.Node, maxBindingNodeName}, {"contact", b.Contact, validate.MaxSIPURILen},
		{"source", b.Source, maxBindingSource}, {"user_agent", b.UserAgent, maxBindingUA},
	} {
		if f.v == "" && f.name != "user_agent" {
			return fmt.Errorf("%s: empty", f.name)
		}
		if err := validate.Text(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	if !validTransports[b.Transport] {
		return fmt.Errorf("transport: want udp, tcp, ws or wss, got %q", validate.Truncate(b.Transport, 16))
	}
	if b.Expires.IsZero() {
		return errors.New("expires: not set")
	}
	return nil
}

// KEYS[1] the extension's bindings HASH (BindingsKey), KEYS[2] the
// extensions SET (BindingExtsKey), KEYS[3] the node index HASH of the
// binding's node (NodeBindingsKey).
// ARGV[1] binding id, ARGV[2] binding JSON, ARGV[3] extension, ARGV[4] node
// index field, ARGV[5] node index value, ARGV[6] TTL in ms the three keys
// must have at least.
// Returns 1 when the binding is new, 0 when it replaced one with the same id.
var putBindingScript = redis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
local ttl = tonumber(ARGV[6])
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return new
`)

// PutBinding adds or renews a binding (same extension and id: replaced).
func (s *Store) PutBinding(ctx context.Context, b Binding) error {
	if err := checkBinding(b); err != nil {
		return validate.Short(fmt.Errorf("store: binding %q of user %q: %w", validate.Truncate(b.ID, 64), validate.Truncate(b.Ext, 64), err))
	}
	doc, err := b.MarshalJSON()
	if err != nil {
		return fmt.Errorf("store: binding %q of user %q: %w", b.ID, b.Ext, err)
	}
	idx, err := json.Marshal(nodeIndexEntry{Transport: b.Transport, Source: b.Source})
	if err != nil {
		return fmt.Errorf("store: binding %q of user %q: %w", b.ID, b.Ext, err)
	}
	ttl := max(time.Until(b.Expires), 0) + bindingKeyGrace
	keys := []string{s.BindingsKey(b.Ext), s.BindingExtsKey(), s.NodeBindingsKey(b.Node)}
	if err := putBindingScript.Run(ctx, s.rdb, keys, b.ID, string(doc), b.Ext, nodeIndexField(b.Ext, b.ID), string(idx), ttlMillis(ttl)).Err(); err != nil {
		return fmt.Errorf("store: put binding %q of user %q: %w", b.ID, b.Ext, err)
	}
	return nil
}

// KEYS[1] the extension's bindings HASH, KEYS[2] the extensions SET,
// KEYS[3] the node index HASH the binding is listed in.
// ARGV[1] binding id, ARGV[2] the binding JSON the caller read ("" when it
// read none), ARGV[3] extension, ARGV[4] node index field, ARGV[5] "1" to
// delete the binding and its index entry, "0" to delete only the index
// entry (the binding is absent or belongs to another node).
// Returns 1 when done; 0 when the binding is no longer what the caller read
// (renewed or moved meanwhile) and nothing was changed.
var unbindScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return 0 end
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('HDEL', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
end
return 1
`)

// KEYS[1] the extension's bindings HASH, KEYS[2] the extensions SET.
// ARGV[1] extension.
// Returns 1 when the extension has no binding left and was dropped from
// the set, else 0.
var dropExtScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[1])
`)

// unbindOp is one call of unbindScript.
type unbindOp struct {
	ext, id string
	// read is the binding JSON the caller read, "" for none.
	read string
	// node is the index the entry is removed from.
	node string
	// binding also deletes the binding, not only its index entry.
	binding bool
}

// unbind runs ops in one pipelined round trip and reports which took
// effect.
func (s *Store) unbind(ctx context.Context, ops []unbindOp) ([]bool, error) {
	done := make([]bool, len(ops))
	if len(ops) == 0 {
		return done, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	for i, op := range ops {
		flag := "0"
		if op.binding {
			flag = "1"
		}
		keys := []string{s.BindingsKey(op.ext), s.BindingExtsKey(), s.NodeBindingsKey(op.node)}
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT.
		cmds[i] = unbindScript.Eval(ctx, pipe, keys, op.id, op.read, op.ext, nodeIndexField(op.ext, op.id), flag)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return done, fmt.Errorf("store: remove bindings: %w", err)
	}
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return done, fmt.Errorf("store: remove binding %q of user %q: %w", ops[i].id, ops[i].ext, err)
		}
		done[i] = n == 1
	}
	return done, nil
}

// decodeBinding decodes one stored binding.
func decodeBinding(raw string) (Binding, error) {
	var j bindingJSON
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		return Binding{}, fmt.Errorf("invalid JSON: %w", err)
	}
	return Binding{ID: j.ID, Ext: j.Ext, Node: j.Node, Transport: j.Transport, Contact: j.Contact, Source: j.Source,
		UserAgent: j.UserAgent, Expires: j.Expires, Registered: j.Registered}, nil
}

// bindingRetries bounds how often RemoveBinding re-reads a binding that
// keeps being renewed while it removes it.
const bindingRetries = 10

// RemoveBinding removes one binding; removing one that is gone already is
// not an error.
func (s *Store) RemoveBinding(ctx context.Context, ext, id string) error {
	for range bindingRetries {
		raw, found, err := s.hgetFound(ctx, s.BindingsKey(ext), id)
		if err != nil || !found {
			return err
		}
		b, _ := decodeBinding(raw) // undecodable: removed all the same
		done, err := s.unbind(ctx, []unbindOp{{ext: ext, id: id, read: raw, node: b.Node, binding: true}})
		if err != nil {
			return err
		}
		if done[0] {
			return nil
		}
	}
	return fmt.Errorf("store: remove binding %q of user %q: renewed %d times while being removed", id, ext, bindingRetries)
}

// Bindings returns the unexpired bindings of one extension (Expires after
// now), oldest registration first; expired and undecodable ones are
// deleted on the way.
func (s *Store) Bindings(ctx context.Context, ext string, now time.Time) ([]Binding, error) {
	if err := ValidateExtension(ext); err != nil {
		return nil, validate.Short(fmt.Errorf("store: bindings of user %q: %w", validate.Truncate(ext, 64), err))
	}
	m, err := s.hgetAll(ctx, s.BindingsKey(ext))
	if err != nil {
		return nil, err
	}
	live, stale := sortBindings(ext, m, now)
	if _, err := s.unbind(ctx, stale); err != nil {
		return nil, err
	}
	return live, nil
}

// sortBindings splits one extension's stored bindings into the live ones,
// sorted, and removals of the expired and undecodable ones.
func sortBindings(ext string, m map[string]string, now time.Time) (live []Binding, stale []unbindOp) {
	for id, raw := range m {
		b, err := decodeBinding(raw)
		if err != nil || b.Ext != ext || b.ID != id || !b.Expires.After(now) {
			stale = append(stale, unbindOp{ext: ext, id: id, read: raw, node: b.Node, binding: true})
			continue
		}
		live = append(live, b)
	}
	sort.Slice(live, func(i, j int) bool {
		if !live[i].Registered.Equal(live[j].Registered) {
			return live[i].Registered.Before(live[j].Registered)
		}
		return live[i].ID < live[j].ID
	})
	return live, stale
}

// AllBindings returns every unexpired binding of the domain, by extension
// and then as Bindings orders them; expired ones are deleted on the way.
func (s *Store) AllBindings(ctx context.Context, now time.Time) ([]Binding, error) {
	exts, err := s.rdb.SMembers(ctx, s.BindingExtsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", s.BindingExtsKey(), err)
	}
	sort.Strings(exts)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(exts))
	for i, ext := range exts {
		cmds[i] = pipe.HGetAll(ctx, s.BindingsKey(ext))
	}
	if len(exts) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("store: read bindings: %w", err)
		}
	}
	var all []Binding
	var stale []unbindOp
	var empty []string
	for i, ext := range exts {
		m := cmds[i].Val()
		if len(m) == 0 {
			empty = append(empty, ext)
			continue
		}
		live, gone := sortBindings(ext, m, now)
		all = append(all, live...)
		stale = append(stale, gone...)
	}
	if _, err := s.unbind(ctx, stale); err != nil {
		return nil, err
	}
	if len(empty) > 0 {
		// Their hashes expired as keys: the set forgets them, unless a
		// binding came back meanwhile (the script checks).
		pipe := s.rdb.Pipeline()
		for _, ext := range empty {
			dropExtScript.Eval(ctx, pipe, []string{s.BindingsKey(ext), s.BindingExtsKey()}, ext)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("store: forget extensions without bindings: %w", err)
		}
	}
	return all, nil
}

// RemoveNodeBindings removes every binding made through node (the node
// stops, or died) and returns how many were removed.
func (s *Store) RemoveNodeBindings(ctx context.Context, node string) (int, error) {
	return s.removeIndexed(ctx, node, func(nodeIndexEntry) bool { return true },
		func(b Binding) bool { return b.Node == node })
}

// RemoveNodeSocketBindings removes node's WebSocket (ws, wss) bindings:
// after the node restarts, the sockets they name are gone, while phones
// registered over UDP or TCP are still reachable through it.
func (s *Store) RemoveNodeSocketBindings(ctx context.Context, node string) (int, error) {
	socket := func(t string) bool { return t == "ws" || t == "wss" }
	return s.removeIndexed(ctx, node, func(e nodeIndexEntry) bool { return socket(e.Transport) },
		func(b Binding) bool { return b.Node == node && socket(b.Transport) })
}

// RemoveBindingsBySource removes every binding made through node from
// transport and source (a WebSocket closed: every binding of that socket)
// and returns how many were removed.
func (s *Store) RemoveBindingsBySource(ctx context.Context, node, transport, source string) (int, error) {
	return s.removeIndexed(ctx, node,
		func(e nodeIndexEntry) bool { return e.Transport == transport && e.Source == source },
		func(b Binding) bool { return b.Node == node && b.Transport == transport && b.Source == source })
}

// removeIndexed removes the bindings of node's index whose entry matches
// entry and whose binding matches binding; index entries whose binding is
// gone or now belongs elsewhere are dropped on the way.
func (s *Store) removeIndexed(ctx context.Context, node string, entry func(nodeIndexEntry) bool, binding func(Binding) bool) (int, error) {
	idx, err := s.hgetAll(ctx, s.NodeBindingsKey(node))
	if err != nil {
		return 0, err
	}
	type cand struct{ ext, id string }
	var cands []cand
	for field, v := range idx {
		ext, id, ok := strings.Cut(field, " ")
		var e nodeIndexEntry
		if !ok || json.Unmarshal([]byte(v), &e) != nil {
			// Not written by redial: drop it without reading a binding.
			if err := s.rdb.HDel(ctx, s.NodeBindingsKey(node), field).Err(); err != nil {
				return 0, fmt.Errorf("store: HDEL %s: %w", s.NodeBindingsKey(node), err)
			}
			continue
		}
		if entry(e) {
			cands = append(cands, cand{ext, id})
		}
	}
	if len(cands) == 0 {
		return 0, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(cands))
	for i, c := range cands {
		cmds[i] = pipe.HGet(ctx, s.BindingsKey(c.ext), c.id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("store: read bindings of node %q: %w", node, err)
	}
	ops := make([]unbindOp, len(cands))
	for i, c := range cands {
		raw, err := cmds[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("store: read binding %q of user %q: %w", c.id, c.ext, err)
		}
		ops[i] = unbindOp{ext: c.ext, id: c.id, read: raw, node: node}
		if raw == "" {
			continue // gone: only the index entry goes
		}
		b, err := decodeBinding(raw)
		// An undecodable binding listed here is useless to everyone.
		ops[i].binding = err != nil || binding(b)
		if err == nil && b.Node == node && !binding(b) {
			// Still this node's, but another socket's: keep the entry.
			ops[i] = unbindOp{}
		}
	}
	kept := ops[:0]
	for _, op := range ops {
		if op.ext != "" {
			kept = append(kept, op)
		}
	}
	done, err := s.unbind(ctx, kept)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, op := range kept {
		if done[i] && op.binding {
			n++
		}
	}
	return n, nil
}

// MarshalJSON writes a binding as it is kept in Redis, the shape of
// GET /api/v1/agents and `redial agent list --json`.
func (b Binding) MarshalJSON() ([]byte, error) {
	return json.Marshal(bindingJSON{ID: b.ID, Ext: b.Ext, Node: b.Node, Transport: b.Transport, Contact: b.Contact,
		Source: b.Source, UserAgent: b.UserAgent, Expires: b.Expires.UTC(), Registered: b.Registered.UTC()})
}
