package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// A side climbs its ladder to the first unsustained step, then halves the
// gap below it twice: a ceiling of 9,300 calls/s is found at 9,000, not at
// the ladder's 8,000.
func TestClimbNarrowsTheGapBelowTheCeiling(t *testing.T) {
	var order []int
	ran, err := climb(context.Background(), []int{1000, 2000, 4000, 8000, 12000, 16000}, func(rate int) (bool, error) {
		order = append(order, rate)
		return rate <= 9300, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1000, 2000, 4000, 8000, 12000, 10000, 9000}; !slices.Equal(order, want) {
		t.Errorf("steps run %v, want %v", order, want)
	}
	if want := []int{1000, 2000, 4000, 8000, 9000, 10000, 12000}; !slices.Equal(ran, want) {
		t.Errorf("ran %v, want %v (ascending)", ran, want)
	}
	runs := map[int]*redialRun{}
	for _, r := range ran {
		runs[r] = &redialRun{sustained: r <= 9300}
	}
	if best := bestRedial(ran, runs); best != 9000 {
		t.Errorf("best sustained %d, want 9000", best)
	}

	// A first step that fails leaves nothing to refine; an error stops the
	// climb where it happened.
	order = nil
	if ran, _ := climb(context.Background(), []int{1000, 2000}, func(rate int) (bool, error) {
		order = append(order, rate)
		return false, nil
	}); !slices.Equal(ran, []int{1000}) || !slices.Equal(order, []int{1000}) {
		t.Errorf("failing first step: ran %v, steps %v; want [1000] only", ran, order)
	}
	boom := errors.New("boom")
	if ran, err := climb(context.Background(), []int{1000, 2000, 4000}, func(rate int) (bool, error) {
		if rate == 4000 {
			return false, boom
		}
		return true, nil
	}); !errors.Is(err, boom) || !slices.Equal(ran, []int{1000, 2000}) {
		t.Errorf("error at 4000: ran %v, err %v; want [1000 2000] and boom", ran, err)
	}
}

// The two sides take their steps in turn, each up its own ladder to its
// own ceiling; a side that is done leaves the other to go on alone, and an
// error stops only its own side.
func TestClimbAlternatelyTakesTurns(t *testing.T) {
	var order []string
	side := func(name string, ceiling int, fail int) climbSide {
		return climbSide{step: func(rate int) (bool, error) {
			order = append(order, fmt.Sprintf("%s%d", name, rate))
			if rate == fail {
				return false, errors.New(name + " broke")
			}
			return rate <= ceiling, nil
		}}
	}
	s := side("s", 9300, 0)
	s.ladder = []int{1000, 4000, 8000, 12000}
	r := side("r", 1500, 0)
	r.ladder = []int{1000, 2000, 3000}
	ran, errs := climbAlternately(context.Background(), s, r)
	want := []string{"s1000", "r1000", "s4000", "r2000", "s8000", "r1500", "s12000", "s10000", "s9000"}
	if !slices.Equal(order, want) {
		t.Errorf("steps run %v, want %v", order, want)
	}
	if !slices.Equal(ran[0], []int{1000, 4000, 8000, 9000, 10000, 12000}) || !slices.Equal(ran[1], []int{1000, 1500, 2000}) {
		t.Errorf("ran %v", ran)
	}
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("errors %v", errs)
	}

	order = nil
	s = side("s", 100000, 4000)
	s.ladder = []int{1000, 4000, 8000}
	r = side("r", 100000, 0)
	r.ladder = []int{1000, 2000, 3000}
	ran, errs = climbAlternately(context.Background(), s, r)
	if want := []string{"s1000", "r1000", "s4000", "r2000", "r3000"}; !slices.Equal(order, want) {
		t.Errorf("with s failing at 4000: steps run %v, want %v", order, want)
	}
	if errs[0] == nil || errs[1] != nil || !slices.Equal(ran[0], []int{1000}) || !slices.Equal(ran[1], []int{1000, 2000, 3000}) {
		t.Errorf("with s failing at 4000: ran %v, errors %v", ran, errs)
	}
}
