package lines

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"redial/internal/batch"
	"redial/internal/store"
)

// batchLimit bounds the leases one Redis round trip acquires or releases
// on one line; a burst larger than that takes several round trips.
const batchLimit = 200

// releaseLinger is how long a release waits for others on its line to
// share its ZREM. A release comes at the end of a call (or of a failed
// attempt), where nobody waits on it to make progress, and each round trip
// saved is a write and a Redis wake-up (issue 14); a channel freed a
// millisecond later costs nothing. Acquires, on the dial path, never wait.
const releaseLinger = time.Millisecond

// acquireKey names the lease requests that can share one acquire script
// run: the same line with the same limits. A reload that changes a line's
// limits while requests are in flight sends the new ones in a run of their
// own.
type acquireKey struct {
	line       string
	limit, cps int
}

// newBatches builds the Manager's combiners: concurrent acquires of one
// line cost Redis one script run, concurrent releases one ZREM.
func (m *Manager) newBatches() {
	m.acquires = batch.New(batchLimit, func(ctx context.Context, k acquireKey, ids []string) ([]store.LineGrant, error) {
		// The run outlives its first caller's cancellation; a grant that
		// comes back after LeaseTTL has expired already, so wait no longer.
		ctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseTTL)
		defer cancel()
		return m.st.AcquireLineLeases(ctx, k.line, ids, k.limit, k.cps, m.cfg.LeaseTTL)
	})
	m.releases = batch.New(batchLimit, func(ctx context.Context, line string, ids []string) ([]struct{}, error) {
		// An unreleased lease expires after LeaseTTL anyway.
		ctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseTTL)
		defer cancel()
		leases := make([]store.LineLease, len(ids))
		for i, id := range ids {
			leases[i] = store.LineLease{Line: line, ID: id}
		}
		if err := m.st.ReleaseLineLeases(ctx, leases); err != nil {
			return nil, err
		}
		return make([]struct{}, len(ids)), nil
	}, batch.Linger(releaseLinger))
}

// acquireLease asks Redis for one lease on line, combined with the other
// requests for that line in flight on this node.
func (m *Manager) acquireLease(ctx context.Context, line, id string, limit, cps int) (store.LineGrant, error) {
	return m.acquires.Do(ctx, acquireKey{line: line, limit: limit, cps: cps}, id)
}

// Lease is one channel held on one line. The Manager renews it until
// Release.
type Lease struct {
	// Line is a copy of the line's definition at grant time.
	Line Line
	// ID is the lease's member in Redis: <node>:<call_ref>:<random>.
	ID      string
	CallRef string
	// GrantedAt is the Redis server's time of the grant (the CPS clock).
	GrantedAt time.Time

	m        *Manager
	released atomic.Bool
	lost     bool // guarded by m.heldMu: expired and not re-added yet
}

// Acquire takes a channel on an enabled line of group for the call
// callRef. Lines are tried with the most free channels first (as last
// seen), ties by name. When no line has a free channel, or the group has no
// usable line, the error wraps ErrNoLine and names the group. When a line
// has a free channel but its CPS budget is spent, Acquire waits for the
// next slot until ctx ends.
func (m *Manager) Acquire(ctx context.Context, group string, callRef string) (*Lease, error) {
	for {
		snap, err := m.current(ctx)
		if err != nil {
			return nil, fmt.Errorf("lines: acquire in group %q: %w", group, err)
		}
		cands := snap.groups[group]
		if len(cands) == 0 {
			return nil, fmt.Errorf("lines: group %q has no enabled line: %w", group, ErrNoLine)
		}
		order := make([]*lineState, len(cands))
		copy(order, cands)
		free := make(map[*lineState]int, len(order))
		for _, ls := range order {
			free[ls] = ls.free()
		}
		// cands is sorted by name and the sort is stable: ties stay by name.
		slices.SortStableFunc(order, func(a, b *lineState) int { return free[b] - free[a] })

		wait := time.Duration(-1)
		var redisErr error
		for _, ls := range order {
			now := time.Now()
			if until := ls.live.cpsUntil.Load(); until > now.UnixNano() {
				wait = shorter(wait, time.Duration(until-now.UnixNano()))
				continue
			}
			l := ls.line
			id := m.leaseID(callRef)
			g, err := m.acquireLease(ctx, l.Name, id, l.Limit, l.CPS)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("lines: acquire in group %q: %w", group, ctx.Err())
				}
				if redisErr == nil {
					redisErr = fmt.Errorf("lines: acquire line %q of group %q: %w", l.Name, group, err)
				}
				continue
			}
			ls.live.inUse.Store(int64(g.InUse))
			switch g.Status {
			case store.LineGranted:
				ls.live.granted.Add(1)
				m.inUse.WithLabelValues(l.Name).Set(float64(g.InUse))
				lease := &Lease{Line: cloneLine(l), ID: id, CallRef: callRef, GrantedAt: g.At, m: m}
				m.heldMu.Lock()
				m.held[id] = lease
				m.heldPeak = max(m.heldPeak, len(m.held))
				m.heldMu.Unlock()
				// Checked first: the arguments alone cost every call four
				// allocations with debug off.
				if m.log.Enabled(ctx, slog.LevelDebug) {
					m.log.Debug("lines: acquired", "call_ref", callRef, "line", l.Name, "group", group, "in_use", g.InUse)
				}
				return lease, nil
			case store.LineCPSLimited:
				ls.live.cpsUntil.Store(now.Add(g.RetryAfter).UnixNano())
				wait = shorter(wait, g.RetryAfter)
			}
		}
		if wait < 0 {
			if redisErr != nil {
				return nil, redisErr
			}
			return nil, fmt.Errorf("lines: group %q: %w", group, ErrNoLine)
		}
		// Callers waiting on this node would otherwise all ask Redis in the
		// same millisecond.
		wait += time.Duration(rand.Int64N(int64(2 * time.Millisecond)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lines: group %q: waiting for a CPS slot: %w", group, ctx.Err())
		case <-t.C:
		}
	}
}

func shorter(cur, d time.Duration) time.Duration {
	if cur < 0 || d < cur {
		return d
	}
	return cur
}

// leaseID returns <node>:<call_ref>:<16 hex digits>, as
// fmt.Sprintf("%s:%s:%016x") would, in one allocation instead of four.
func (m *Manager) leaseID(callRef string) string {
	const hex = "0123456789abcdef"
	var r [16]byte
	x := rand.Uint64()
	for i := len(r) - 1; i >= 0; i-- {
		r[i] = hex[x&0xf]
		x >>= 4
	}
	var b strings.Builder
	b.Grow(len(m.cfg.NodeID) + len(callRef) + 2 + len(r))
	b.WriteString(m.cfg.NodeID)
	b.WriteByte(':')
	b.WriteString(callRef)
	b.WriteByte(':')
	b.Write(r[:])
	return b.String()
}

// Release gives the channel back. It is idempotent; when Redis cannot be
// reached the lease is forgotten anyway and expires after LeaseTTL.
// Releases on one line within a millisecond of each other share one ZREM,
// so Release may wait that long for others to join.
func (l *Lease) Release(ctx context.Context) error {
	if l == nil || !l.released.CompareAndSwap(false, true) {
		return nil
	}
	m := l.m
	m.heldMu.Lock()
	delete(m.held, l.ID)
	m.shrinkHeldLocked()
	m.heldMu.Unlock()
	if _, err := m.releases.Do(ctx, l.Line.Name, l.ID); err != nil {
		return fmt.Errorf("lines: release line %q: %w", l.Line.Name, err)
	}
	if m.log.Enabled(ctx, slog.LevelDebug) {
		m.log.Debug("lines: released", "call_ref", l.CallRef, "line", l.Line.Name)
	}
	return nil
}

// shrinkHeldLocked rebuilds m.held small once it has fallen to a
// sixteenth of its peak: a Go map keeps the buckets of its peak, so a
// burst of calls would otherwise leave them for good. The copy costs at
// most a sixteenth of the releases since the peak. heldMu is held.
func (m *Manager) shrinkHeldLocked() {
	const minPeak = 256 // below it, the buckets are not worth the copy
	if m.heldPeak < minPeak || len(m.held) > m.heldPeak/16 {
		return
	}
	held := make(map[string]*Lease, len(m.held))
	for id, l := range m.held {
		held[id] = l
	}
	m.held, m.heldPeak = held, len(held)
}

// Held is the number of leases this node holds.
func (m *Manager) Held() int {
	m.heldMu.Lock()
	defer m.heldMu.Unlock()
	return len(m.held)
}

// ReleaseAll releases every lease this node holds, in one round trip: for a
// clean shutdown once the node's calls are over.
func (m *Manager) ReleaseAll(ctx context.Context) error {
	m.heldMu.Lock()
	var refs []store.LineLease
	for id, l := range m.held {
		if l.released.CompareAndSwap(false, true) {
			refs = append(refs, store.LineLease{Line: l.Line.Name, ID: l.ID})
		}
		delete(m.held, id)
	}
	m.heldMu.Unlock()
	if err := m.st.ReleaseLineLeases(ctx, refs); err != nil {
		return fmt.Errorf("lines: release all: %w", err)
	}
	return nil
}

// renew pushes the expiry of every held lease forward.
func (m *Manager) renew(ctx context.Context) {
	m.heldMu.Lock()
	byLine := map[string][]*Lease{}
	for _, l := range m.held {
		byLine[l.Line.Name] = append(byLine[l.Line.Name], l)
	}
	m.heldMu.Unlock()
	if len(byLine) == 0 {
		return
	}
	m.mu.RLock()
	snap := m.snap
	m.mu.RUnlock()

	renewals := make([]store.LineRenewal, 0, len(byLine))
	leases := make([][]*Lease, 0, len(byLine))
	for name, ls := range byLine {
		limit := ls[0].Line.Limit
		if snap != nil && snap.lines[name] != nil {
			limit = snap.lines[name].line.Limit
		}
		ids := make([]string, len(ls))
		for i, l := range ls {
			ids[i] = l.ID
		}
		renewals = append(renewals, store.LineRenewal{Line: name, Limit: limit, IDs: ids})
		leases = append(leases, ls)
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseTTL/2)
	defer cancel()
	results, err := m.st.RenewLineLeases(rctx, renewals, m.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			m.outage.Fail("lines: renewing leases failed; retrying", err, "leases", m.Held())
		}
		return
	}
	m.outage.OK()
	var late []store.LineLease // released while the renewal was in flight
	for i, r := range results {
		if r.Err != nil {
			m.log.Warn("lines: renew leases", "line", r.Line, "err", r.Err)
			continue
		}
		m.inUse.WithLabelValues(r.Line).Set(float64(r.InUse))
		if snap != nil && snap.lines[r.Line] != nil {
			snap.lines[r.Line].live.inUse.Store(int64(r.InUse))
		}
		m.heldMu.Lock()
		for j, st := range r.Status {
			l := leases[i][j]
			if l.released.Load() {
				if st == store.LeaseReAdded {
					late = append(late, store.LineLease{Line: r.Line, ID: l.ID})
				}
				continue
			}
			switch st {
			case store.LeaseLost:
				if !l.lost {
					m.log.Warn("lines: lease expired while Redis was unreachable and the line is full; the call runs over the limit",
						"call_ref", l.CallRef, "line", r.Line, "lease", l.ID)
				}
				l.lost = true
			case store.LeaseReAdded:
				m.log.Info("lines: lease had expired and was taken back", "call_ref", l.CallRef, "line", r.Line, "lease", l.ID)
				l.lost = false
			default:
				l.lost = false
			}
		}
		m.heldMu.Unlock()
	}
	if len(late) > 0 {
		if err := m.st.ReleaseLineLeases(rctx, late); err != nil {
			m.log.Warn("lines: release leases renewed during release; they expire after the TTL", "err", err)
		}
	}
}

// String is for logs.
func (l *Lease) String() string { return "lease " + l.ID + " on line " + l.Line.Name }

// AcquireSlot takes one of limit cluster-wide slots named name, with the
// same expiring, renewed leases as line channels: a task's global_limit.
// It returns ErrNoLine (wrapped) when all slots are taken. Slot names live
// beside line names in Redis, prefixed "slot:" so they cannot collide.
func (m *Manager) AcquireSlot(ctx context.Context, name string, limit int, callRef string) (*Lease, error) {
	key := "slot:" + name
	id := m.leaseID(callRef)
	g, err := m.acquireLease(ctx, key, id, limit, Unlimited)
	if err != nil {
		return nil, fmt.Errorf("lines: acquire slot %q: %w", name, err)
	}
	if g.Status != store.LineGranted {
		return nil, fmt.Errorf("lines: slot %q: all %d taken: %w", name, limit, ErrNoLine)
	}
	lease := &Lease{Line: Line{Name: key, Limit: limit, CPS: Unlimited, Enable: true}, ID: id, CallRef: callRef, GrantedAt: g.At, m: m}
	m.heldMu.Lock()
	m.held[id] = lease
	m.heldPeak = max(m.heldPeak, len(m.held))
	m.heldMu.Unlock()
	return lease, nil
}
