package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"redial/internal/sim"
)

// printSummary prints the CDR table that ends a demo run, from the CDRs as
// they were published on the Redis list, and what the simulated carrier
// saw: the campaign's INVITEs and those of the scheduled calls, which
// ring the same carrier.
func printSummary(w io.Writer, raw []string, el time.Duration, st sim.Stats, scheduled int) {
	type row struct {
		n                 int
		duration, billsec int
		codes             map[int]int
	}
	rows := map[string]*row{}
	bad := 0
	for _, s := range raw {
		var env struct {
			Type    string `json:"type"`
			Payload struct {
				Disposition string `json:"disposition"`
				SIPCode     int    `json:"sip_code"`
				Duration    int    `json:"duration"`
				Billsec     int    `json:"billsec"`
			} `json:"payload"`
		}
		if json.Unmarshal([]byte(s), &env) != nil || env.Type != "cdr" {
			bad++
			continue
		}
		r := rows[env.Payload.Disposition]
		if r == nil {
			r = &row{codes: map[int]int{}}
			rows[env.Payload.Disposition] = r
		}
		r.n++
		r.duration += env.Payload.Duration
		r.billsec += env.Payload.Billsec
		r.codes[env.Payload.SIPCode]++
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return rows[keys[i]].n > rows[keys[j]].n })
	total := len(raw) - bad
	fmt.Fprintf(w, "\nCDR summary (%d CDRs on enigma:notifications:campaigns, %.1fs)\n", total, el.Seconds())
	fmt.Fprintf(w, "%-16s %6s %7s %9s %9s  %s\n", "disposition", "calls", "share", "avg dur", "avg bill", "sip codes")
	for _, k := range keys {
		r := rows[k]
		codes := ""
		ck := make([]int, 0, len(r.codes))
		for c := range r.codes {
			ck = append(ck, c)
		}
		sort.Ints(ck)
		for _, c := range ck {
			codes += fmt.Sprintf("%d×%d ", c, r.codes[c])
		}
		fmt.Fprintf(w, "%-16s %6d %6.1f%% %8.1fs %8.1fs  %s\n", k, r.n, 100*float64(r.n)/float64(max(total, 1)),
			float64(r.duration)/float64(r.n), float64(r.billsec)/float64(r.n), codes)
	}
	fmt.Fprintf(w, "%-16s %6d\n", "total", total)
	if bad > 0 {
		fmt.Fprintf(w, "%d entries were not CDRs\n", bad)
	}
	fmt.Fprintf(w, "simulated carrier saw %d INVITEs (the campaign's, and up to %d scheduled calls'): %d answered, %d busy, %d left ringing\n",
		st.Invites, scheduled, st.Answered, st.Busy, st.Ringing)
}

func simCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5080", "UDP listen address")
	answer := fs.Int("answer", 60, "percent of calls answered")
	busy := fs.Int("busy", 20, "percent of calls busy (the rest ring until cancelled)")
	ring := fs.Duration("ring", 600*time.Millisecond, "ringing time")
	talk := fs.Duration("talk", 2*time.Second, "talk time before the simulator hangs up (0 waits for BYE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := sim.New(sim.Config{Addr: *addr, AnswerPct: *answer, BusyPct: *busy, Ring: *ring, Talk: *talk, Seed: uint64(time.Now().UnixNano())}, newLogger("info"))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "simulated carrier listening on udp %s\n", s.Addr())
	return s.Run(ctx)
}
