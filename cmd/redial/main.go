// Command redial is the redial call-automation server and its CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"redial/internal/app"
	"redial/internal/config"
	"redial/internal/logtext"
	"redial/internal/sip"
	"redial/internal/store"
)

const usage = `redial: call automation over SIP and Redis

usage:
  redial serve [flags]        run a node (flags also as REDIAL_* env vars; see redial serve -h)
  redial originate [flags]    place a call through a running node's API (--token or REDIAL_TOKEN)
  redial click2dial --ext E --number N [--line-group G] [--call-ref R] [--contact-ref C] [--var k=v]   ring agent E, then dial N and bridge them (--token)
  redial task set NAME --file task.json [--host H]   write a task and publish the change notice
  redial task list            tasks as this node merges them (template + @host)
  redial task status          each task's state and why it is not dialing (from a node's API; --token)
  redial numbers push QUEUE [FILE|-]   push numbers (text, CSV or JSON lines)
  redial numbers stats QUEUE  waiting, claimed, delayed, interrupted and invalid counts
  redial schedule add --at TIME --number N --config C [--expires T]   schedule a call
  redial schedule list        scheduled calls, soonest first
  redial event push voicemail_saved --account A --vmbox V   queue a voicemail event
  redial token create NAME --capability rest,ivrapi,files,dashboard [--domain D]   print a new API token (once)
  redial token list           API tokens: name, capabilities, domain, created (never the token)
  redial token revoke NAME    revoke a token on every node within a second
  redial agent list [--json]  agents' registrations: extension, node, transport, source, expiry, user agent
  redial agent state EXT available|paused|logged_out [--reason R]   set an agent's queue state (from a node's API; --token)
  redial queue status [--json]   each inbound queue: waiting, longest wait, service level, agents by state (from a node's API; --token)
  redial nodes [--json]       the cluster's nodes: alive or dead since when, age, SIP and HTTP addresses, version
  redial cdr tail [--group G] [--consumer C] [--json]   follow CDRs from the redial:cdr stream (a consumer group; <prefix>:campaigns is untouched)
  redial cdr stats [--since 1h] [--json]   CDR counts by disposition and campaign, answer rate, average billsec, calls per minute
  redial demo [flags]         run the self-contained demo (own redis-server and simulated carrier)
  redial sim [flags]          run the simulated carrier and destination alone
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// The CLI's own Redis clients; serve and demo route to their logger.
	store.RouteClientLogs(newLogger("warn"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "originate":
		err = originate(ctx, os.Args[2:])
	case "click2dial":
		err = click2dial(ctx, os.Args[2:])
	case "demo":
		err = demo(ctx, os.Args[2:])
	case "sim":
		err = simCmd(ctx, os.Args[2:])
	case "task":
		err = taskCmd(ctx, os.Args[2:])
	case "numbers":
		err = numbersCmd(ctx, os.Args[2:])
	case "schedule":
		err = scheduleCmd(ctx, os.Args[2:])
	case "event":
		err = eventCmd(ctx, os.Args[2:])
	case "nodes":
		err = nodesCmd(ctx, os.Args[2:])
	case "cdr":
		err = cdrCmd(ctx, os.Args[2:])
	case "token":
		err = tokenCmd(ctx, os.Args[2:])
	case "agent":
		err = agentCmd(ctx, os.Args[2:])
	case "queue":
		err = queueCmd(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "redial: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "redial:", err)
		os.Exit(1)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	done := config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := done()
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	store.RouteClientLogs(log)
	sip.SetLibraryLogger(log, logtext.LimitConfig{})
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
