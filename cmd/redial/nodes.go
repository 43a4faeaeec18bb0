package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"redial/internal/cluster"
)

// nodesCmd prints the node directory. Like `task list` it reads Redis
// directly rather than one node's API: the directory is shared state, and
// it should be readable exactly when nodes are in trouble.
func nodesCmd(ctx context.Context, args []string) error {
	return nodesList(ctx, args, os.Stdout)
}

func nodesList(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("nodes", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	asJSON := fs.Bool("json", false, "print the nodes as JSON (the shape of GET /api/v1/nodes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	// Every registration carries its node's own TTL; the default only
	// covers registrations written without one.
	nodes, err := cluster.List(ctx, st, now, cluster.DefaultTTL)
	if err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"nodes": nodes})
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tSTATE\tAGE\tSIP\tHTTP\tVERSION")
	for _, n := range nodes {
		state := "alive"
		if !n.Alive {
			state = "dead"
			if n.DeadSince != nil {
				state = fmt.Sprintf("dead since %s (%s ago)", n.DeadSince.Local().Format("2006-01-02 15:04:05"),
					shortDuration(now.Sub(*n.DeadSince)))
			}
		}
		age := "-"
		if !n.Started.IsZero() {
			age = shortDuration(n.Age)
		}
		http := n.HTTP
		if n.PublicURL != "" && n.PublicURL != "http://"+n.HTTP {
			http += " (" + n.PublicURL + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Host, state, age, sipAddrs(n.SIP), orDash(http), orDash(n.Version))
	}
	return w.Flush()
}

// sipAddrs formats transport -> address as "udp 1.2.3.4:5060, tcp ...",
// in a stable order.
func sipAddrs(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + m[k]
	}
	return strings.Join(parts, ", ")
}

// shortDuration rounds to what a person reads at a glance: seconds under
// a minute, minutes under a day, then days and hours.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
