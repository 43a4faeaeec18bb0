package app

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"redial/internal/acd"
	"redial/internal/cluster"
	"redial/internal/jsonfield"
	"redial/internal/sip"
	"redial/internal/store"
)

// agentUsers gives the registrar the passwords of cti_user@<domain>.
type agentUsers struct {
	st  *store.Store
	log *slog.Logger
}

// Password implements sip.Users: a user that is missing or disabled has
// none. One whose entry does not decode has none either (logged): a typo in
// one user must not answer every REGISTER of theirs with 500.
func (u agentUsers) Password(ctx context.Context, ext string) (string, bool, error) {
	user, found, err := u.st.User(ctx, ext)
	if err != nil {
		var bad *jsonfield.Error
		if !errors.As(err, &bad) {
			return "", false, err // Redis: the registrar answers 500, counts nothing
		}
		u.log.Warn("app: user entry not usable; its REGISTERs are refused", "ext", ext, "error", err)
		return "", false, nil
	}
	if !found || !user.Enable {
		return "", false, nil
	}
	return user.Password, true, nil
}

// agentBindings keeps the registrar's bindings in Redis, and tells the
// queues when an agent registers anew.
type agentBindings struct {
	st  *store.Store
	acd *acd.Service
	log *slog.Logger
}

func (b agentBindings) PutBinding(ctx context.Context, x sip.Binding) error {
	isNew := false
	if b.acd != nil {
		// A refresh is not a login: an agent who logged out while still
		// registered stays logged out until a new registration.
		list, err := b.st.Bindings(ctx, x.Ext, time.Now())
		isNew = err == nil && !slices.ContainsFunc(list, func(o store.Binding) bool { return o.ID == x.ID })
	}
	if err := b.st.PutBinding(ctx, store.Binding(x)); err != nil {
		return err
	}
	if isNew {
		b.acd.AgentRegistered(ctx, x.Ext)
	}
	return nil
}

func (b agentBindings) RemoveBinding(ctx context.Context, ext, id string) error {
	return b.st.RemoveBinding(ctx, ext, id)
}

func (b agentBindings) RemoveBindingsBySource(ctx context.Context, node, transport, source string) (int, error) {
	return b.st.RemoveBindingsBySource(ctx, node, transport, source)
}

func (b agentBindings) Bindings(ctx context.Context, ext string, now time.Time) ([]sip.Binding, error) {
	list, err := b.st.Bindings(ctx, ext, now)
	out := make([]sip.Binding, len(list))
	for i, x := range list {
		out[i] = sip.Binding(x)
	}
	return out, err
}

// agentJanitor removes the bindings of a node that died: its WebSockets
// are gone, and calls to its agents would ring nobody.
type agentJanitor struct {
	dir *cluster.Directory
	st  *store.Store
	log *slog.Logger
}

func (j agentJanitor) Run(ctx context.Context) error {
	deaths, stop := j.dir.Deaths()
	defer stop()
	// A previous run of this node (same --host) left WebSocket bindings
	// whose sockets died with it.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if n, err := j.st.RemoveNodeSocketBindings(rctx, j.dir.Self()); err != nil {
		j.log.Warn("app: WebSocket bindings of this node's previous run not removed; they expire by themselves", "error", err)
	} else if n > 0 {
		j.log.Info("app: WebSocket bindings of this node's previous run removed", "bindings", n)
	}
	cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case host, ok := <-deaths:
			if !ok {
				return nil
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := j.st.RemoveNodeBindings(rctx, host)
			cancel()
			if err != nil {
				j.log.Warn("app: bindings of a dead node not removed; they expire by themselves", "node", host, "error", err)
			} else if n > 0 {
				j.log.Info("app: agents' bindings of a dead node removed", "node", host, "bindings", n)
			}
		}
	}
}

// clusterNodes answers the call manager's questions about other nodes from
// the node directory.
type clusterNodes struct {
	dir  *cluster.Directory
	self string
}

// SIPAddr implements call.Nodes.
func (n clusterNodes) SIPAddr(ctx context.Context, host string) (string, bool) {
	nodes, err := n.dir.Nodes(ctx)
	if err != nil {
		return "", false
	}
	for _, x := range nodes {
		if x.Host == host && x.Alive && x.SIP["udp"] != "" {
			return x.SIP["udp"], true
		}
	}
	return "", false
}

// NodeAt implements call.Nodes.
func (n clusterNodes) NodeAt(ctx context.Context, source string) (string, bool) {
	nodes, err := n.dir.Nodes(ctx)
	if err != nil {
		return "", false
	}
	for _, x := range nodes {
		if x.Host != n.self && x.Alive && x.SIP["udp"] == source {
			return x.Host, true
		}
	}
	return "", false
}
