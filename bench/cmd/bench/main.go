// Command bench measures redial against references on this machine and
// writes the results as sections of docs/benchmarks.md.
//
//	go run ./bench/cmd/bench -parts originate -out docs/benchmarks.md
//
// Each part lives in its own file and produces one "## N. Title" section;
// only the sections of the parts run are replaced in -out, so parts can be
// rerun one at a time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// part is one benchmark: it returns its markdown section, starting with
// its heading.
type part struct {
	name    string
	heading string
	run     func(ctx context.Context, b *bench) (string, error)
}

// parts in report order; later parts register here.
var parts = []part{
	{name: "originate", heading: "## 1. Originate", run: runOriginate},
	{name: "campaign", heading: "## 2. Campaign", run: runCampaign},
	{name: "schedule", heading: "## 3. Schedule precision", run: runSchedule},
	{name: "media", heading: "## 4. Media", run: runMedia},
	{name: "ivrapi", heading: "## 5. ivrapi", run: runIVRAPI},
	{name: "webrtc", heading: "## 6. WebRTC legs", run: runWebRTC},
	{name: "queue", heading: "## 7. Queue", run: runQueue},
	{name: "dashboard", heading: "## 8. Dashboard", run: runDashboard},
	{name: "memory", heading: "## 9. Memory", run: runMemory},
	{name: "ceiling", heading: "## 10. Cluster ceiling", run: runCeiling},
}

// bench is what every part shares: flags, paths and the work directory.
type bench struct {
	root       string
	work       string
	command    string
	duration   time.Duration
	rates      []int
	sippRates  []int // originate: the reference's own ladder
	inflight   int
	sippBuff   int
	cpuProfile string
	memProfile string
	blkProfile string
	keep       bool
	// libLogs counts records libraries wrote through slog.Default (sipgo's
	// transaction layer: unmatched retransmissions and the like).
	libLogs *atomic.Int64
}

func main() {
	if cfg := os.Getenv(originateNodeEnv); cfg != "" {
		// This process is the originate part's node (originate_node.go).
		os.Exit(originateNodeMain(cfg))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var names []string
	for _, p := range parts {
		names = append(names, p.name)
	}
	partsFlag := fs.String("parts", strings.Join(names, ","), "comma-separated parts to run: "+strings.Join(names, ", "))
	out := fs.String("out", "", "markdown file whose sections of the parts run are replaced (created if missing); empty prints only")
	duration := fs.Duration("duration", 10*time.Second, "length of one ladder step (calls per step = rate × duration)")
	rates := fs.String("rates", "1000,2000,3000,4000,5000,6000,7000,8000,12000,16000", "originate: call-rate ladder in calls/s, ascending; each side stops at its first unsustained step")
	sippRates := fs.String("sipp-rates", "1000,2000,4000,8000,12000,16000,20000,24000,28000,32000", "originate: SIPp reference's own rate ladder in calls/s, ascending (it runs up to its first unsustained step, so the ratio is against its best sustained rate); \"none\" skips it")
	inflight := fs.Int("inflight", 1000, "originate: cap on calls in flight (also the bench line's limit)")
	sippBuff := fs.Int("sipp-buff", 4<<20, "SIPp socket buffer size in bytes (-buff_size; the kernel caps it at net.core.rmem_max); 0 keeps SIPp's 64 KiB default, which drops datagrams whenever SIPp is descheduled for a few ms at these rates")
	cpuProfile := fs.String("cpuprofile", "", "originate: write a CPU profile of an extra redial run at its best sustained rate to this file")
	blkProfile := fs.String("blockprofile", "", "originate: write block and mutex profiles (<file> and <file>.mutex) of that extra run")
	memProfile := fs.String("memprofile", "", "originate: write a heap profile (after GC, calls ended, node still up) of that extra run to this file")
	keep := fs.Bool("keep", false, "keep the work directory (SIPp logs and statistics, node log)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &bench{duration: *duration, inflight: *inflight, sippBuff: *sippBuff, cpuProfile: *cpuProfile, memProfile: *memProfile, blkProfile: *blkProfile, keep: *keep,
		command: "go run ./bench/cmd/bench " + strings.Join(args, " ")}
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("-rates: %q is not a positive number", r)
		}
		b.rates = append(b.rates, n)
	}
	if *sippRates != "none" {
		for _, r := range strings.Split(*sippRates, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(r))
			if err != nil || n <= 0 {
				return fmt.Errorf("-sipp-rates: %q is not a positive number", r)
			}
			b.sippRates = append(b.sippRates, n)
		}
	}
	var selected []part
	for _, n := range strings.Split(*partsFlag, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, p := range parts {
			if p.name == n {
				selected, found = append(selected, p), true
			}
		}
		if !found {
			return fmt.Errorf("-parts: unknown part %q (have %s)", n, strings.Join(names, ", "))
		}
	}
	var err error
	if b.root, err = repoRoot(); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp("", "redial-bench-"); err != nil {
		return err
	}
	if b.keep {
		fmt.Printf("work directory: %s\n", b.work)
	} else {
		defer os.RemoveAll(b.work)
	}
	for _, p := range []*string{&b.cpuProfile, &b.memProfile, &b.blkProfile} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	libLogs, closer, err := installDefaultLogger(filepath.Join(b.work, "slog-default.log"))
	if err != nil {
		return err
	}
	defer closer.Close()
	b.libLogs = libLogs

	var sections []string
	var failed []error
	for _, p := range selected {
		fmt.Printf("== %s ==\n", p.heading)
		sec, err := p.run(ctx, b)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", p.name, err))
			if sec == "" {
				continue
			}
		}
		fmt.Println()
		fmt.Println(sec)
		sections = append(sections, sec)
		if ctx.Err() != nil {
			break
		}
	}
	if *out != "" && len(sections) > 0 {
		if err := writeSections(*out, sections); err != nil {
			failed = append(failed, err)
		} else {
			fmt.Printf("wrote %s\n", *out)
		}
	}
	return errors.Join(failed...)
}

const docHeader = `# Benchmarks

Measured by ` + "`make bench`" + ` (` + "`go run ./bench/cmd/bench -out docs/benchmarks.md`" + `) on the
machine named in each section. Every part starts its own redis-server, SIPp
processes and an in-process redial node; nothing else should run at the same
time, as the numbers are CPU-bound.
`

// writeSections replaces, in path, each section by the one with the same
// heading line (up to the next "## " heading), appending sections not there
// yet; a missing file is created with a short header.
func writeSections(path string, sections []string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		old = []byte(docHeader)
	} else if err != nil {
		return fmt.Errorf("bench: read %s: %w", path, err)
	}
	doc := string(old)
	for _, sec := range sections {
		heading, _, _ := strings.Cut(sec, "\n")
		doc = replaceSection(doc, heading, strings.TrimRight(sec, "\n")+"\n")
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

func replaceSection(doc, heading, sec string) string {
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if start < 0 && strings.TrimSpace(t) == heading {
			start = i
			continue
		}
		if start >= 0 && strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	if start < 0 {
		if !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + sec
	}
	after := strings.Join(lines[end:], "")
	if after != "" {
		sec += "\n"
	}
	return strings.Join(lines[:start], "") + sec + after
}
