package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"redial/internal/dialer"
)

func numbersCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("numbers: want a subcommand: push, stats")
	}
	switch args[0] {
	case "push":
		return numbersPush(ctx, args[1:])
	case "stats":
		return numbersStats(ctx, args[1:])
	}
	return fmt.Errorf("numbers: unknown subcommand %q (want push, stats)", args[0])
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

// parseNumbers turns text, CSV or JSON lines into queue items. Text: one
// number per line. CSV: number,contact_ref[,timezone] with an optional header
// row. JSON lines: each line an item as the seed defines it, pushed as is.
// Lines that would be rejected by the dialer are reported, not pushed.
func parseNumbers(r io.Reader, name string) (items []string, bad []string, err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	first, _ := br.Peek(512)
	isCSV := strings.Contains(strings.SplitN(string(first), "\n", 2)[0], ",") && !strings.HasPrefix(strings.TrimSpace(string(first)), "{")
	if isCSV {
		cr := csv.NewReader(br)
		cr.FieldsPerRecord = -1
		cr.TrimLeadingSpace = true
		line := 0
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			line++
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			if line == 1 && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "number") {
				continue
			}
			item := csvItem(rec)
			if _, err := dialer.ParseItem(item); err != nil {
				bad = append(bad, fmt.Sprintf("%s:%d: %v", name, line, err))
				continue
			}
			items = append(items, item)
		}
		return items, bad, nil
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if _, err := dialer.ParseItem(s); err != nil {
			bad = append(bad, fmt.Sprintf("%s:%d: %v", name, line, err))
			continue
		}
		items = append(items, s)
	}
	return items, bad, sc.Err()
}

func csvItem(rec []string) string {
	get := func(i int) string {
		if i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	number, contact, tz := get(0), get(1), get(2)
	if contact == "" && tz == "" {
		return number
	}
	params := map[string]string{"number": number}
	if contact != "" {
		params["contact_ref"] = contact
	}
	if tz != "" {
		params["timezone"] = tz
	}
	return mustJSON(map[string]any{"params": params})
}

func numbersPush(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("numbers push", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: redial numbers push QUEUE [FILE|-]")
	}
	queue := args[0]
	rest := args[1:]
	src := "-"
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") || len(rest) > 0 && rest[0] == "-" {
		src, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("numbers push: %w", err)
		}
		defer f.Close()
		in = f
	}
	items, bad, err := parseNumbers(in, src)
	if err != nil {
		return fmt.Errorf("numbers push: %w", err)
	}
	for _, b := range bad {
		fmt.Fprintln(os.Stderr, "skipped:", b)
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	const batch = 1000
	pushed := 0
	for i := 0; i < len(items); i += batch {
		end := min(i+batch, len(items))
		n, err := st.PushNumbers(ctx, queue, items[i:end])
		pushed += n
		if err != nil {
			return fmt.Errorf("numbers push: after %d of %d: %w", pushed, len(items), err)
		}
		fmt.Fprintf(os.Stderr, "\r%s %d/%d", bar(pushed, len(items), 30), pushed, len(items))
	}
	fmt.Fprintf(os.Stderr, "\n")
	fmt.Printf("pushed %d numbers to %s in %.2fs (%d skipped)\n", pushed, queue, time.Since(start).Seconds(), len(bad))
	return nil
}

func bar(done, total, width int) string {
	if total == 0 {
		return "[" + strings.Repeat("#", width) + "]"
	}
	f := done * width / total
	return "[" + strings.Repeat("#", f) + strings.Repeat(".", width-f) + "]"
}

func numbersStats(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("numbers stats", flag.ContinueOnError)
	rf := addRedisFlags(fs)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: redial numbers stats QUEUE")
	}
	queue := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	st, err := rf.open()
	if err != nil {
		return err
	}
	defer st.Close()
	qs, err := st.QueueStats(ctx, queue)
	if err != nil {
		return err
	}
	fmt.Printf("queue %s\n  waiting      %d\n", queue, qs.Queue)
	for host, n := range qs.Processing {
		fmt.Printf("  claimed by %s  %d\n", host, n)
	}
	fmt.Printf("  delayed      %d", qs.Retry)
	if !qs.NextRetry.IsZero() {
		fmt.Printf(" (next due %s)", qs.NextRetry.Local().Format(time.DateTime))
	}
	fmt.Printf("\n  interrupted  %d  (%s:interrupted)\n  invalid      %d  (%s:invalid)\n", qs.Interrupted, queue, qs.Invalid, queue)
	return nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
