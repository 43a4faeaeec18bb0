package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"
)

// agentCmd shows agents' registrations. It reads Redis directly, like
// `redial nodes`: who is registered where is shared state.
func agentCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "state" {
		return agentState(ctx, args[1:], os.Stdout) // queue.go
	}
	if len(args) == 0 || args[0] != "list" {
		return errors.New("agent: want a subcommand: list, state")
	}
	return agentList(ctx, args[1:], os.Stdout)
}

func agentList(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("agent list", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	asJSON := fs.Bool("json", false, "print the registrations as JSON (the shape of GET /api/v1/agents)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	list, err := st.AllBindings(ctx, now)
	if err != nil {
		return fmt.Errorf("agent list: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"agents": list})
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "EXT\tNODE\tTRANSPORT\tSOURCE\tEXPIRES IN\tUSER AGENT")
	for _, b := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Ext, b.Node, b.Transport, b.Source, shortDuration(b.Expires.Sub(now)), orDash(b.UserAgent))
	}
	return w.Flush()
}
