package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"redial/internal/notify"
	"redial/internal/store"
)

// tailBlock is how long one XREADGROUP of `cdr tail` waits. go-redis does
// not cut a blocked read short when ctx is cancelled, so this bounds how
// long Ctrl-C takes.
const tailBlock = time.Second

// tailBatch is how many CDRs one read of `cdr tail` takes.
const tailBatch = 100

// Bounds of `cdr stats --since`.
const (
	minStatsWindow = time.Minute
	maxStatsWindow = 30 * 24 * time.Hour
)

const cdrTailHelp = `usage: redial cdr tail [--group NAME] [--consumer NAME] [--json] [--redis URL]

Print CDRs as they are published, one line each (or the CDR JSON with --json),
from the Redis stream redial:cdr. It reads through a consumer group (default
redial-cli-<hostname>, created at the stream's end if missing) and acknowledges
what it printed, so a restarted tail resumes where it stopped. The stream is a
copy: the integrators' list <prefix>:campaigns is never read or changed, so a
tail never takes a CDR away from an integration. Tails in different groups each
see every CDR; tails sharing a group split them. Ctrl-C stops it.

flags:
`

const cdrStatsHelp = `usage: redial cdr stats [--since 1h] [--json] [--redis URL]

Summarise the CDRs of the redial:cdr stream published in the last --since
(a Go duration, or whole days as Nd; 1m to 30d): counts by disposition and by
campaign_ref, answer rate, average billsec of answered calls, calls per minute.
The stream keeps only its newest entries (about 1,000,000 by default), so a long
window on a busy system counts what is left. Reads only; changes nothing.

flags:
`

func cdrCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("cdr: want a subcommand: tail, stats")
	}
	switch args[0] {
	case "tail":
		return cdrTail(ctx, args[1:], os.Stdout)
	case "stats":
		return cdrStats(ctx, args[1:], os.Stdout)
	}
	return fmt.Errorf("cdr: unknown subcommand %q (want tail, stats)", args[0])
}

// validStreamName checks a consumer group or consumer name: 1 to 64 of
// [A-Za-z0-9_.-], so it reads plainly in XINFO and cannot be mistaken for
// an option.
func validStreamName(flagName, s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("cdr tail: --%s: want 1 to 64 characters, got %d", flagName, len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return fmt.Errorf("cdr tail: --%s %q: want only A-Z a-z 0-9 _ . -", flagName, s)
		}
	}
	return nil
}

// streamName makes prefix+host a valid group or consumer name: host
// characters outside the allowed set become '-', and the result is cut to
// 64 bytes.
func streamName(prefix, host string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range host {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		s = "redial-cli"
	}
	return s
}

func cdrTail(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cdr tail", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), cdrTailHelp); fs.PrintDefaults() }
	rf := addRedisFlags(fs)
	h, _ := os.Hostname()
	group := fs.String("group", streamName("redial-cli-", h), "consumer group; tails in one group share the CDRs, each group sees all")
	consumer := fs.String("consumer", streamName("", h), "consumer name within the group")
	asJSON := fs.Bool("json", false, "print each CDR as its JSON, one per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cdr tail: unexpected argument %q", fs.Arg(0))
	}
	if err := validStreamName("group", *group); err != nil {
		return err
	}
	if err := validStreamName("consumer", *consumer); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.EnsureCDRGroup(ctx, *group); err != nil {
		return fmt.Errorf("cdr tail: %w", err)
	}
	// First what this consumer read but never acknowledged (a tail stopped
	// between printing and XACK), then new CDRs.
	for {
		cs, err := st.PendingCDRs(ctx, *group, *consumer, tailBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cdr tail: %w", err)
		}
		if len(cs) == 0 {
			break
		}
		if err := printAndAck(ctx, st, *group, cs, *asJSON, out); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		cs, err := st.ReadCDRGroup(ctx, *group, *consumer, tailBatch, tailBlock)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("cdr tail: %w", err)
		}
		if err := printAndAck(ctx, st, *group, cs, *asJSON, out); err != nil {
			return err
		}
	}
	return nil
}

// printAndAck prints cs and then acknowledges them, so a CDR is never
// acknowledged unprinted; one printed twice after a crash is the lesser
// harm. Entries trimmed from the stream while pending carry no payload and
// are acknowledged silently.
func printAndAck(ctx context.Context, st *store.Store, group string, cs []store.StreamCDR, asJSON bool, out io.Writer) error {
	if len(cs) == 0 {
		return nil
	}
	ids := make([]string, 0, len(cs))
	var buf bytes.Buffer
	for _, c := range cs {
		ids = append(ids, c.ID)
		if c.Payload == nil {
			continue
		}
		if asJSON {
			if err := json.Compact(&buf, c.Payload); err != nil {
				fmt.Fprintf(&buf, `{"stream_id":%q,"error":%q}`, c.ID, "undecodable CDR: "+err.Error())
			}
			buf.WriteByte('\n')
			continue
		}
		buf.WriteString(cdrLine(c))
		buf.WriteByte('\n')
	}
	if _, err := out.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("cdr tail: write: %w", err)
	}
	// A cancelled ctx must not lose the ack of what was just printed.
	if err := st.AckCDR(context.WithoutCancel(ctx), group, ids...); err != nil {
		return fmt.Errorf("cdr tail: %w", err)
	}
	return nil
}

// cdrLine is one CDR as a line: end time (local), call_ref, campaign_ref,
// client_number, disposition, sip_code, ext, duration/billsec.
func cdrLine(c store.StreamCDR) string {
	var r notify.CDR
	if err := json.Unmarshal(c.Payload, &r); err != nil {
		return fmt.Sprintf("%s  stream entry %s: undecodable CDR: %v", c.Time.Local().Format(time.DateTime), c.ID, err)
	}
	at := r.End
	if at.IsZero() {
		at = c.Time
	}
	ext := "-"
	if r.Ext != nil {
		ext = printable(*r.Ext)
	}
	return fmt.Sprintf("%s  %s  %s  %s  %s  %d  ext=%s  %ds/%ds",
		at.Local().Format(time.DateTime), printable(r.CallRef), printable(r.CampaignRef), printable(r.ClientNumber),
		printable(string(r.Disposition)), r.SIPCode, ext, r.Duration, r.Billsec)
}

// printable keeps CDR text (partly from outsiders) from driving the
// operator's terminal or splitting a line: control and space characters
// become '?', and empty is "-".
func printable(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}

// parseWindow reads --since: a Go duration or whole days ("7d"), 1m..30d.
func parseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("cdr stats: --since %q: want a duration like 90m, 24h or 7d", s)
		}
		d = time.Duration(min(max(n, -1), 1000)) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("cdr stats: --since %q: want a duration like 90m, 24h or 7d", s)
		}
	}
	if d < minStatsWindow || d > maxStatsWindow {
		return 0, fmt.Errorf("cdr stats: --since %q: want 1m to 30d", s)
	}
	return d, nil
}

// cdrSummary is the result of `cdr stats`, and its --json shape.
type cdrSummary struct {
	Since              time.Time      `json:"since"`
	WindowSeconds      int64          `json:"window_seconds"`
	Total              int            `json:"total"`
	Answered           int            `json:"answered"`
	AnswerRate         float64        `json:"answer_rate"`
	AvgBillsecAnswered float64        `json:"avg_billsec_answered"`
	CallsPerMinute     float64        `json:"calls_per_minute"`
	ByDisposition      map[string]int `json:"by_disposition"`
	ByCampaign         map[string]int `json:"by_campaign_ref"`
	// Undecodable counts entries whose payload is not a CDR; they are in
	// no other count.
	Undecodable int `json:"undecodable"`
}

func cdrStats(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cdr stats", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), cdrStatsHelp); fs.PrintDefaults() }
	rf := addRedisFlags(fs)
	sinceFlag := fs.String("since", "1h", "window to summarise, 1m to 30d (90m, 24h, 7d)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cdr stats: unexpected argument %q", fs.Arg(0))
	}
	window, err := parseWindow(*sinceFlag)
	if err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	sum := cdrSummary{Since: time.Now().Add(-window).UTC().Truncate(time.Millisecond), WindowSeconds: int64(window / time.Second),
		ByDisposition: map[string]int{}, ByCampaign: map[string]int{}}
	var billsec int64
	err = st.CDRsSince(ctx, sum.Since, func(c store.StreamCDR) error {
		var r struct {
			CampaignRef string `json:"campaign_ref"`
			Disposition string `json:"disposition"`
			Billsec     int    `json:"billsec"`
		}
		if c.Payload == nil || json.Unmarshal(c.Payload, &r) != nil {
			sum.Undecodable++
			return nil
		}
		sum.Total++
		sum.ByDisposition[r.Disposition]++
		sum.ByCampaign[r.CampaignRef]++
		if r.Disposition == "ANSWERED" {
			sum.Answered++
			billsec += int64(r.Billsec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cdr stats: %w", err)
	}
	if sum.Total > 0 {
		sum.AnswerRate = float64(sum.Answered) / float64(sum.Total)
	}
	if sum.Answered > 0 {
		sum.AvgBillsecAnswered = float64(billsec) / float64(sum.Answered)
	}
	sum.CallsPerMinute = float64(sum.Total) / window.Minutes()
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "CDRs since %s (%s):\t%d\n", sum.Since.Local().Format(time.DateTime), *sinceFlag, sum.Total)
	fmt.Fprintf(w, "calls per minute:\t%.2f\n", sum.CallsPerMinute)
	fmt.Fprintf(w, "answer rate:\t%.1f%% (%d answered)\n", 100*sum.AnswerRate, sum.Answered)
	fmt.Fprintf(w, "average billsec (answered):\t%.1f\n", sum.AvgBillsecAnswered)
	if sum.Undecodable > 0 {
		fmt.Fprintf(w, "undecodable entries:\t%d\n", sum.Undecodable)
	}
	for _, g := range []struct {
		title string
		m     map[string]int
	}{{"by disposition", sum.ByDisposition}, {"by campaign_ref", sum.ByCampaign}} {
		if len(g.m) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\t\n", g.title)
		for _, k := range byCountDesc(g.m) {
			fmt.Fprintf(w, "  %s\t%d\n", printable(k), g.m[k])
		}
	}
	return w.Flush()
}

// byCountDesc orders keys by count, largest first, then by name.
func byCountDesc(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
