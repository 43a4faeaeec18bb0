package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"redial/internal/callback"
	"redial/internal/schedule"
)

func scheduleCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("schedule: want a subcommand: add, list")
	}
	switch args[0] {
	case "add":
		return scheduleAdd(ctx, args[1:])
	case "list":
		return scheduleList(ctx, args[1:])
	}
	return fmt.Errorf("schedule: unknown subcommand %q (want add, list)", args[0])
}

// parseWhen accepts RFC 3339, "2006-01-02 15:04[:05]" (local time), unix
// seconds, or "+90s"/"+5m" relative to now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "+") {
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: %w", s, err)
		}
		return now.Add(d), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, \"2006-01-02 15:04\", unix seconds or +duration", s)
}

func scheduleAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("schedule add", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	at := fs.String("at", "", "when to call: RFC 3339, \"2006-01-02 15:04\", unix seconds or +duration")
	number := fs.String("number", "", "number to call (comma separated: tried in order)")
	cfgName := fs.String("config", "", "name in cti_schedule_dialer_config@<domain>")
	expires := fs.String("expires", "", "do not call after this time (same forms as --at); empty: never")
	vars := kvFlag{}
	fs.Var(vars, "var", "channel variable name=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now()
	if *at == "" || *number == "" || *cfgName == "" {
		return errors.New("schedule add: --at, --number and --config are required")
	}
	when, err := parseWhen(*at, now)
	if err != nil {
		return fmt.Errorf("schedule add: --at %w", err)
	}
	params := map[string]any{"config": *cfgName, "expires": 0}
	if nums := splitList(*number); len(nums) == 1 {
		params["number"] = nums[0]
	} else {
		params["number"] = nums
	}
	if *expires != "" {
		e, err := parseWhen(*expires, now)
		if err != nil {
			return fmt.Errorf("schedule add: --expires %w", err)
		}
		params["expires"] = e.Unix()
	}
	member := mustJSON(map[string]any{"params": params, "variables": map[string]string(vars)})
	// The scheduler's own checks: refuse now what it would move aside.
	if err := schedule.CheckMember(member); err != nil {
		return fmt.Errorf("schedule add: %w", err)
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Client().HGet(ctx, st.ScheduleConfigKey(), *cfgName).Result(); err != nil {
		fmt.Fprintf(os.Stderr, "warning: config %q is not in %s (yet); the member will be moved aside if it is still missing when due\n", *cfgName, st.ScheduleConfigKey())
	}
	if err := st.AddScheduled(ctx, member, float64(when.UnixMilli())/1000); err != nil {
		return err
	}
	fmt.Printf("scheduled %s at %s in %s\n", *number, when.Format(time.RFC3339), st.ScheduleNumbersKey())
	return nil
}

func scheduleList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("schedule list", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	limit := fs.Int("limit", 50, "members to show, soonest first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.ListScheduled(ctx, math.Inf(-1), math.Inf(1), *limit)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DUE\tNUMBER\tCONFIG\tEXPIRES")
	for _, c := range list {
		var m struct {
			Params struct {
				Number  any    `json:"number"`
				Config  string `json:"config"`
				Expires any    `json:"expires"`
			} `json:"params"`
		}
		json.Unmarshal([]byte(c.Member), &m)
		sec, frac := math.Modf(c.Score)
		due := time.Unix(int64(sec), int64(frac*1e9)).Local().Format("2006-01-02 15:04:05")
		fmt.Fprintf(w, "%s\t%v\t%s\t%v\n", due, m.Params.Number, m.Params.Config, m.Params.Expires)
	}
	return w.Flush()
}

func eventCmd(ctx context.Context, args []string) error {
	if len(args) < 2 || args[0] != "push" {
		return errors.New("usage: redial event push voicemail_saved --account A --vmbox V")
	}
	name := args[1]
	fs := flag.NewFlagSet("event push", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	account := fs.String("account", "", "account id")
	vmbox := fs.String("vmbox", "", "vmbox id")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if name != "voicemail_saved" {
		return fmt.Errorf("event push: %q: only voicemail_saved is handled", name)
	}
	if *account == "" || *vmbox == "" {
		return errors.New("event push: --account and --vmbox are required")
	}
	ev := mustJSON(map[string]string{"event_name": name, "account_id": *account, "vmbox_id": *vmbox})
	if _, err := callback.ParseEvent(ev); err != nil {
		return fmt.Errorf("event push: %w", err)
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.PushEvent(ctx, ev); err != nil {
		return err
	}
	fmt.Printf("pushed %s to %s\n", ev, st.EventsKey())
	return nil
}
