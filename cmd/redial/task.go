package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"redial/internal/dialer"
	"redial/internal/store"
)

// redisFlags are the settings CLI commands that talk to Redis directly
// share with `redial serve`.
type redisFlags struct {
	url, domain, host string
}

func addRedisFlags(fs *flag.FlagSet) *redisFlags {
	r := &redisFlags{}
	h, _ := os.Hostname()
	fs.StringVar(&r.url, "redis", envOr("REDIAL_REDIS", "redis://127.0.0.1:6379/0"), "Redis URL [env REDIAL_REDIS]")
	fs.StringVar(&r.domain, "domain", envOr("REDIAL_DOMAIN", "default"), "domain [env REDIAL_DOMAIN]")
	if fs.Lookup("host") == nil {
		fs.StringVar(&r.host, "host", envOr("REDIAL_HOST", h), "node name [env REDIAL_HOST]")
	}
	return r
}

func (r *redisFlags) open() (*store.Store, error) {
	return store.New(store.Config{URL: r.url, Domain: r.domain, Host: r.host})
}

func taskCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("task: want a subcommand: set, list, status")
	}
	switch args[0] {
	case "set":
		return taskSet(ctx, args[1:])
	case "list":
		return taskList(ctx, args[1:])
	case "status":
		return taskStatus(ctx, args[1:])
	}
	return fmt.Errorf("task: unknown subcommand %q (want set, list, status)", args[0])
}

// taskSet writes a task and publishes the seed's change notice, after
// checking the config the way a node will read it.
func taskSet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("task set", flag.ContinueOnError)
	onHost := fs.String("host", "", "write to cti_queue_dialer_task@<host> (fields there override the template) instead of @template")
	rf := addRedisFlags(fs)
	file := fs.String("file", "", "task JSON file ({\"params\":{...},\"variables\":{...}}); - for stdin")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: redial task set NAME --file task.json [--host H]")
	}
	name := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var b []byte
	var err error
	switch *file {
	case "":
		return errors.New("task set: --file is required")
	case "-":
		b, err = readAll(os.Stdin)
	default:
		b, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("task set: %w", err)
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	value := strings.TrimSpace(string(b))
	if err := dialer.WriteTask(ctx, st, *onHost, name, value, time.Local); err != nil {
		return fmt.Errorf("task set: not written: %w", err)
	}
	hostKey := st.TaskHostKey(*onHost)
	where := st.TaskTemplateKey()
	if *onHost != "" {
		where = hostKey
	}
	fmt.Printf("task %q written to %s and change notice published\n", name, where)
	return nil
}

func taskList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("task list", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	tmpl, host, err := st.TasksOf(ctx, rf.host)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for n := range tmpl {
		names[n] = true
	}
	for n := range host {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TASK\tDEFINED IN\tENABLE\tQUEUE\tLIMIT\tLINE GROUPS\tDESTINATION\tERROR")
	for _, n := range sorted {
		where := []string{}
		if _, ok := tmpl[n]; ok {
			where = append(where, "template")
		}
		if _, ok := host[n]; ok {
			where = append(where, "@"+rf.host)
		}
		tk, err := dialer.ParseTask(st.TaskHostKey(rf.host), st.TaskTemplateKey(), n, tmpl[n], host[n], time.Local)
		if err != nil {
			fmt.Fprintf(w, "%s\t%s\t\t\t\t\t\t%v\n", n, strings.Join(where, "+"), err)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%d\t%s\t%s@%s\t\n", n, strings.Join(where, "+"), tk.Enable, tk.Queue, tk.Limit,
			strings.Join(tk.LineGroups, ","), tk.Destination.Extension, tk.Destination.Context)
	}
	return w.Flush()
}

func taskStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("task status", flag.ContinueOnError)
	api := fs.String("api", envOr("REDIAL_API", "http://127.0.0.1:8088"), "node API base URL [env REDIAL_API]")
	token := addTokenFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	resp, err := apiDo(ctx, http.MethodGet, strings.TrimRight(*api, "/")+"/api/v1/tasks", *token, nil)
	if err != nil {
		return fmt.Errorf("task status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("task status: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		Tasks []dialer.TaskStatus `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("task status: %s: %w", resp.Status, err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(body)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TASK\tSTATE\tWHY\tQUEUE\tLEN\tRETRY\tIN FLIGHT\tDIALED\tANSWERED\tFAILED\tINVALID")
	for _, t := range body.Tasks {
		why := t.Reason
		if t.NextOpen != nil {
			why += " (opens " + t.NextOpen.Local().Format("Mon 2006-01-02 15:04 MST") + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d/%d\t%d\t%d\t%d\t%d\n", t.Name, t.State, why, t.Queue, t.QueueLength,
			t.Retrying, t.InFlight, t.Limit, t.Dialed, t.Answered, t.Failed, t.Invalid)
	}
	return w.Flush()
}
