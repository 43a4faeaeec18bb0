package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"redial/internal/acd"
)

// queueCmd shows the inbound queues through a node's API (GET
// /api/v1/queues): the node reads the cluster-wide state from Redis.
func queueCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "status" {
		return errors.New("queue: want a subcommand: status")
	}
	return queueStatus(ctx, args[1:], os.Stdout)
}

// agentStateOrder is the order agents are counted in by state.
var agentStateOrder = []string{"available", "ringing", "on_call", "wrapup", "paused", "logged_out"}

func queueStatus(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("queue status", flag.ContinueOnError)
	api := fs.String("api", envOr("REDIAL_API", "http://127.0.0.1:8088"), "node API base URL [env REDIAL_API]")
	token := addTokenFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("queue status: unexpected argument %q", fs.Arg(0))
	}
	var body struct {
		Queues  []acd.QueueStatus `json:"queues"`
		Invalid map[string]string `json:"invalid"`
	}
	if err := apiJSON(ctx, "queue status", http.MethodGet, strings.TrimRight(*api, "/")+"/api/v1/queues", *token, nil, &body); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(body)
	}
	if len(body.Queues) == 0 {
		fmt.Fprintln(out, "no queues")
	}
	for i, q := range body.Queues {
		if i > 0 {
			fmt.Fprintln(out)
		}
		sl := "-"
		if q.ServiceLevel != nil {
			sl = fmt.Sprintf("%.0f%%", *q.ServiceLevel*100)
		}
		fmt.Fprintf(out, "%s (%s): %d waiting, longest wait %s; service level %s within %ds (last hour: %d answered, %d within, %d abandoned, %d overflowed)\n",
			q.Name, q.Strategy, q.Waiting, shortDuration(time.Duration(q.LongestWaitS)*time.Second), sl, q.ServiceLevelS,
			q.Answered, q.AnsweredWithin, q.Abandoned, q.Overflowed)
		fmt.Fprintf(out, "  agents: %s\n", countByState(q.AgentsByState))
		if len(q.Agents) == 0 {
			continue
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  EXT\tLEVEL\tSTATE\tREASON\tSINCE\tCALLS\tREGISTERED\tCALL REF")
		for _, a := range q.Agents {
			reg := "no"
			if a.Registered {
				reg = "yes"
			}
			fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", a.Ext, a.Level, a.State, orDash(a.Reason),
				shortDuration(time.Duration(a.SinceS)*time.Second), a.Calls, reg, orDash(a.CallRef))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(body.Invalid) > 0 {
		names := make([]string, 0, len(body.Invalid))
		for n := range body.Invalid {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintln(out, "\nskipped entries (they do not decode):")
		for _, n := range names {
			fmt.Fprintf(out, "  %s: %s\n", n, body.Invalid[n])
		}
	}
	return nil
}

// countByState is "1 available, 2 paused", in agentStateOrder, states
// without agents left out.
func countByState(m map[string]int) string {
	var parts []string
	seen := map[string]bool{}
	for _, s := range agentStateOrder {
		seen[s] = true
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
		}
	}
	var other []string
	for s, n := range m {
		if !seen[s] && n > 0 {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// agentState sets an agent's queue state through a node's API (POST
// /api/v1/agents/{ext}/state) and prints the new state.
func agentState(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("agent state", flag.ContinueOnError)
	api := fs.String("api", envOr("REDIAL_API", "http://127.0.0.1:8088"), "node API base URL [env REDIAL_API]")
	token := addTokenFlag(fs)
	reason := fs.String("reason", "", "why the agent is paused (required with paused, 1 to 64 characters)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	// Flags may come before, between or after EXT and STATE.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 2 {
		return errors.New("agent state: want EXT and a state: available, paused (with --reason) or logged_out")
	}
	body, _ := json.Marshal(map[string]string{"state": pos[1], "reason": *reason})
	var got struct {
		Ext    string `json:"ext"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	u := strings.TrimRight(*api, "/") + "/api/v1/agents/" + url.PathEscape(pos[0]) + "/state"
	if err := apiJSON(ctx, "agent state", http.MethodPost, u, *token, body, &got); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(got)
	}
	if got.Reason != "" {
		fmt.Fprintf(out, "%s: %s (%s)\n", got.Ext, got.State, got.Reason)
	} else {
		fmt.Fprintf(out, "%s: %s\n", got.Ext, got.State)
	}
	return nil
}

// apiJSON sends one request to a node's API and decodes a 200's JSON into
// v; any other status is an error carrying the node's message.
func apiJSON(ctx context.Context, what, method, u, token string, body []byte, v any) error {
	resp, err := apiDo(ctx, method, u, token, body)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		msg := strings.TrimSpace(string(b))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %s: %w", what, resp.Status, err)
	}
	return nil
}
