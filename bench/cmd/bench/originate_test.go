package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// The node process's result line parses back to what it said.
func TestParseResultRoundTrip(t *testing.T) {
	start := time.Unix(0, 1796101908842858538)
	line := fmt.Sprintf("r %d %d %d %d %d %d %d %s", 993, start.UnixNano(), start.Add(9*time.Millisecond).UnixNano(),
		4429380, 2125973, 1965505, 348787, strconv.Quote(`FAILED sip 503 "x" y`))
	r, err := parseResult(line)
	if err != nil {
		t.Fatal(err)
	}
	if r.i != 993 || !r.start.Equal(start) || r.end.Sub(r.start) != 9*time.Millisecond || r.setup != 4429380 ||
		r.phases != [3]time.Duration{2125973, 1965505, 348787} || r.fail != `FAILED sip 503 "x" y` {
		t.Fatalf("parsed %+v", r)
	}
	if _, err := parseResult("r 1 2 3"); err == nil {
		t.Fatal("short line accepted")
	}
}
