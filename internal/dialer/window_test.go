package dialer

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

type windowCase struct {
	at   time.Time
	open bool
	why  Reason
	next time.Time // zero: never
}

func checkWindows(t *testing.T, name string, tk *Task, loc *time.Location, cases []windowCase) {
	t.Helper()
	for _, c := range cases {
		var open bool
		var why Reason
		var next time.Time
		if loc == nil {
			open, why, next = tk.Window(c.at)
		} else {
			open, why, next = tk.CalleeWindow(c.at, loc)
		}
		want := c.next
		if c.open {
			want = c.at
		}
		if open != c.open || why != c.why || !next.Equal(want) {
			t.Errorf("%s at %s: got (%v, %q, %s), want (%v, %q, %s)", name, c.at.Format(time.RFC3339), open, why, fmtTime(next), c.open, c.why, fmtTime(want))
		}
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

func mustTask(t *testing.T, params string, loc *time.Location) *Task {
	t.Helper()
	tk, err := ParseTask(hostKey, tmplKey, "t", `{"params": {"line_group": "g1", "limit": 1, "number_queue": "q", "destination_extension": "1", `+params+`}}`, "", loc)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestWindowSeedTask(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	tk, err := ParseTask(hostKey, tmplKey, "sales", seedTask, "", sh)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, sh)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Start Monday 2020-01-20 12:00 is inside the holidays, which run on
	// until Wednesday 08:00; stop is Wednesday 12:00. So the seed's task
	// dials exactly Wednesday 08:00-12:00.
	opens := at("2020-01-22 08:00:00")
	checkWindows(t, "seed", tk, nil, []windowCase{
		{at("2020-01-19 10:00:00"), false, ReasonBeforeStart, opens},
		{at("2020-01-20 09:00:00"), false, ReasonBeforeStart, opens},
		{at("2020-01-20 11:59:59"), false, ReasonBeforeStart, opens},
		{at("2020-01-20 12:00:00"), false, ReasonHoliday, opens},
		{at("2020-01-21 12:00:00"), false, ReasonHoliday, opens},
		{at("2020-01-21 15:00:00"), false, ReasonHoliday, opens},
		{at("2020-01-22 07:59:59"), false, ReasonHoliday, opens},
		{opens, true, ReasonOpen, time.Time{}},
		{at("2020-01-22 11:59:59"), true, ReasonOpen, time.Time{}},
		{at("2020-01-22 12:00:00"), false, ReasonAfterStop, time.Time{}},
		{at("2020-01-22 15:00:00"), false, ReasonAfterStop, time.Time{}},
		{at("2021-06-01 09:00:00"), false, ReasonAfterStop, time.Time{}},
		// Instants in any zone are judged in the task's.
		{time.Date(2020, 1, 22, 0, 30, 0, 0, time.UTC), true, ReasonOpen, time.Time{}},
		{time.Date(2020, 1, 21, 23, 59, 0, 0, time.UTC), false, ReasonHoliday, opens},
	})
	tk.Enable = false
	checkWindows(t, "seed disabled", tk, nil, []windowCase{
		{at("2020-01-22 09:00:00"), false, ReasonDisabled, time.Time{}},
	})
}

func TestWindowWeek(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	d := func(day, h, m int) time.Time { return time.Date(2024, 1, day, h, m, 0, 0, sh) } // 2024-01-01 is a Monday
	hours := `"work_hour": [{"begin": "8:00", "end": "12:00"}, {"begin": "14:00", "end": "18:00"}]`
	tk := mustTask(t, hours+`, "work_week": [1,2,3,4,5]`, sh)
	checkWindows(t, "mon-fri", tk, nil, []windowCase{
		{d(3, 7, 59), false, ReasonOffHours, d(3, 8, 0)},
		{d(3, 8, 0), true, ReasonOpen, time.Time{}},
		{d(3, 11, 59), true, ReasonOpen, time.Time{}},
		{d(3, 12, 0), false, ReasonOffHours, d(3, 14, 0)},
		{d(3, 13, 0), false, ReasonOffHours, d(3, 14, 0)},
		{d(3, 14, 0), true, ReasonOpen, time.Time{}},
		{d(3, 18, 0), false, ReasonOffHours, d(4, 8, 0)},
		{d(5, 18, 30), false, ReasonOffHours, d(8, 8, 0)}, // Friday evening: Monday
		{d(6, 10, 0), false, ReasonOffDay, d(8, 8, 0)},
		{d(7, 23, 59), false, ReasonOffDay, d(8, 8, 0)},
		{d(8, 0, 0), false, ReasonOffHours, d(8, 8, 0)},
	})

	sun := mustTask(t, hours+`, "work_week": [0]`, sh)
	checkWindows(t, "sunday only", sun, nil, []windowCase{
		{d(7, 10, 0), true, ReasonOpen, time.Time{}},
		{d(7, 13, 0), false, ReasonOffHours, d(7, 14, 0)},
		{d(7, 18, 0), false, ReasonOffHours, d(14, 8, 0)},
		{d(8, 10, 0), false, ReasonOffDay, d(14, 8, 0)},
	})

	// Without work_hour a work day is open all day.
	days := mustTask(t, `"work_week": [1,2,3,4,5]`, sh)
	checkWindows(t, "days only", days, nil, []windowCase{
		{d(5, 23, 59), true, ReasonOpen, time.Time{}},
		{d(6, 0, 0), false, ReasonOffDay, d(8, 0, 0)},
	})
	// Without either it is always open.
	always := mustTask(t, `"work_week": []`, sh)
	checkWindows(t, "always", always, nil, []windowCase{{d(6, 3, 0), true, ReasonOpen, time.Time{}}})

	// Holidays inside the week; the next opening is the holiday's end when
	// that falls in work hours, else the next range.
	hol := mustTask(t, hours+`, "work_week": [1,2,3,4,5], "holiday": [{"begin": "2024-01-03 10:00", "end": "2024-01-03 15:00"},
		{"begin": "2024-01-04 10:00", "end": "2024-01-04 19:00"}, {"begin": "2024-01-08 00:00", "end": "2024-01-10 00:00"}]`, sh)
	checkWindows(t, "holidays", hol, nil, []windowCase{
		{d(3, 9, 59), true, ReasonOpen, time.Time{}},
		{d(3, 10, 0), false, ReasonHoliday, d(3, 15, 0)},
		{d(3, 15, 0), true, ReasonOpen, time.Time{}},
		{d(4, 12, 30), false, ReasonHoliday, d(5, 8, 0)},
		{d(5, 18, 0), false, ReasonOffHours, d(10, 8, 0)}, // Mon and Tue are holidays
		{d(9, 9, 0), false, ReasonHoliday, d(10, 8, 0)},
	})

	// Before start: the first opening at or after start_time.
	start := mustTask(t, hours+`, "work_week": [1,2,3,4,5], "start_time": "2024-01-06 10:00", "stop_time": "2024-01-10 13:00"`, sh)
	checkWindows(t, "start/stop", start, nil, []windowCase{
		{d(1, 9, 0), false, ReasonBeforeStart, d(8, 8, 0)},
		{d(9, 12, 30), false, ReasonOffHours, d(9, 14, 0)},
		{d(9, 18, 30), false, ReasonOffHours, d(10, 8, 0)},
		// Stop falls before the next range: nothing opens again.
		{d(10, 12, 30), false, ReasonOffHours, time.Time{}},
		{d(10, 13, 0), false, ReasonAfterStop, time.Time{}},
	})

	// A start years ahead and a holiday longer than the search bound.
	far := mustTask(t, hours+`, "start_time": "2030-01-01 00:00", "holiday": [{"begin": "2030-01-01", "end": "2032-01-01 09:30"}]`, sh)
	checkWindows(t, "far", far, nil, []windowCase{
		{d(1, 9, 0), false, ReasonBeforeStart, time.Date(2032, 1, 1, 9, 30, 0, 0, sh)},
	})
}

func TestWindowMidnight(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	d := func(day, h, m int) time.Time { return time.Date(2024, 1, day, h, m, 0, 0, sh) }
	// A range crossing midnight belongs to the day it begins on.
	tk := mustTask(t, `"work_hour": [{"begin": "22:00", "end": "06:00"}], "work_week": [1,2,3,4,5]`, sh)
	checkWindows(t, "22-06", tk, nil, []windowCase{
		{d(5, 21, 59), false, ReasonOffHours, d(5, 22, 0)},
		{d(5, 23, 0), true, ReasonOpen, time.Time{}},
		{d(6, 3, 0), true, ReasonOpen, time.Time{}}, // Saturday morning is Friday's night
		{d(6, 6, 0), false, ReasonOffDay, d(8, 22, 0)},
		{d(6, 23, 0), false, ReasonOffDay, d(8, 22, 0)},
		{d(7, 23, 0), false, ReasonOffDay, d(8, 22, 0)},
		{d(8, 3, 0), false, ReasonOffHours, d(8, 22, 0)}, // Monday morning: Sunday has no night
		{d(9, 5, 59), true, ReasonOpen, time.Time{}},
	})
	// A holiday cutting a night: the night resumes when the holiday ends.
	hol := mustTask(t, `"work_hour": [{"begin": "22:00", "end": "06:00"}], "holiday": [{"begin": "2024-01-03 20:00", "end": "2024-01-04 02:00"}]`, sh)
	checkWindows(t, "22-06 holiday", hol, nil, []windowCase{
		{d(3, 23, 0), false, ReasonHoliday, d(4, 2, 0)},
	})
	// 24:00 is the end of the day.
	eod := mustTask(t, `"work_hour": [{"begin": "20:00", "end": "24:00"}]`, sh)
	checkWindows(t, "20-24", eod, nil, []windowCase{
		{d(3, 23, 59), true, ReasonOpen, time.Time{}},
		{d(4, 0, 0), false, ReasonOffHours, d(4, 20, 0)},
	})
}

func TestWindowDST(t *testing.T) {
	utc := func(mo time.Month, day, h, m int) time.Time { return time.Date(2024, mo, day, h, m, 0, 0, time.UTC) }
	// 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
	tk := mustTask(t, `"timezone": "America/New_York", "work_hour": [{"begin": "8:00", "end": "12:00"}]`, time.UTC)
	checkWindows(t, "NY 8-12", tk, nil, []windowCase{
		{utc(3, 9, 12, 30), false, ReasonOffHours, utc(3, 9, 13, 0)}, // 07:30 EST
		{utc(3, 9, 13, 0), true, ReasonOpen, time.Time{}},
		{utc(3, 9, 17, 30), false, ReasonOffHours, utc(3, 10, 12, 0)}, // 12:30 EST -> 08:00 EDT, 23 h later
		{utc(3, 10, 11, 59), false, ReasonOffHours, utc(3, 10, 12, 0)},
		{utc(3, 10, 12, 0), true, ReasonOpen, time.Time{}},
		{utc(3, 10, 15, 59), true, ReasonOpen, time.Time{}},
		{utc(3, 10, 16, 0), false, ReasonOffHours, utc(3, 11, 12, 0)},
		{utc(11, 2, 17, 0), false, ReasonOffHours, utc(11, 3, 13, 0)}, // 13:00 EDT -> 08:00 EST, 25 h later
		{utc(11, 3, 12, 30), false, ReasonOffHours, utc(11, 3, 13, 0)},
		{utc(11, 3, 13, 0), true, ReasonOpen, time.Time{}},
		{utc(11, 3, 16, 59), true, ReasonOpen, time.Time{}},
		{utc(11, 3, 17, 0), false, ReasonOffHours, utc(11, 4, 13, 0)},
	})

	// 02:30 does not exist on 2024-03-10: the range opens when the clocks
	// jump to 03:00 EDT (07:00 UTC), not at 01:30 EST as time.Date would
	// put it.
	gap := mustTask(t, `"timezone": "America/New_York", "work_hour": [{"begin": "2:30", "end": "4:00"}]`, time.UTC)
	checkWindows(t, "NY 2:30-4", gap, nil, []windowCase{
		{utc(3, 10, 6, 30), false, ReasonOffHours, utc(3, 10, 7, 0)},
		{utc(3, 10, 7, 0), true, ReasonOpen, time.Time{}},
		{utc(3, 10, 8, 0), false, ReasonOffHours, utc(3, 11, 6, 30)},
	})
	// A range inside the gap is empty that day.
	empty := mustTask(t, `"timezone": "America/New_York", "work_hour": [{"begin": "2:00", "end": "2:30"}]`, time.UTC)
	checkWindows(t, "NY 2-2:30", empty, nil, []windowCase{
		{utc(3, 9, 8, 0), false, ReasonOffHours, utc(3, 11, 6, 0)},
		{utc(3, 10, 7, 0), false, ReasonOffHours, utc(3, 11, 6, 0)},
	})
	// 01:30 happens twice on 2024-11-03: the range starts at the first.
	twice := mustTask(t, `"timezone": "America/New_York", "work_hour": [{"begin": "1:30", "end": "3:00"}]`, time.UTC)
	checkWindows(t, "NY 1:30-3", twice, nil, []windowCase{
		{utc(11, 3, 5, 0), false, ReasonOffHours, utc(11, 3, 5, 30)}, // 01:00 EDT
		{utc(11, 3, 5, 30), true, ReasonOpen, time.Time{}},
		{utc(11, 3, 7, 59), true, ReasonOpen, time.Time{}}, // 02:59 EST
		{utc(11, 3, 8, 0), false, ReasonOffHours, utc(11, 4, 6, 30)},
	})
	// A night across the autumn change lasts 9 hours.
	night := mustTask(t, `"timezone": "America/New_York", "work_hour": [{"begin": "22:00", "end": "6:00"}]`, time.UTC)
	checkWindows(t, "NY 22-6", night, nil, []windowCase{
		{utc(11, 3, 1, 59), false, ReasonOffHours, utc(11, 3, 2, 0)}, // 21:59 EDT Saturday
		{utc(11, 3, 10, 59), true, ReasonOpen, time.Time{}},          // 05:59 EST
		{utc(11, 3, 11, 0), false, ReasonOffHours, utc(11, 4, 3, 0)}, // 22:00 EST Sunday
	})

	// East of UTC time.Date resolves the other way; the rules hold anyway.
	berlin := mustTask(t, `"timezone": "Europe/Berlin", "work_hour": [{"begin": "2:30", "end": "4:00"}]`, time.UTC)
	checkWindows(t, "Berlin 2:30-4", berlin, nil, []windowCase{
		{utc(3, 31, 0, 59), false, ReasonOffHours, utc(3, 31, 1, 0)}, // jump at 01:00 UTC
		{utc(3, 31, 1, 0), true, ReasonOpen, time.Time{}},
		{utc(10, 26, 23, 0), false, ReasonOffHours, utc(10, 27, 0, 30)}, // 02:30 CEST, the first
		{utc(10, 27, 0, 30), true, ReasonOpen, time.Time{}},
		{utc(10, 27, 2, 59), true, ReasonOpen, time.Time{}}, // 03:59 CET
		{utc(10, 27, 3, 0), false, ReasonOffHours, utc(10, 28, 1, 30)},
	})
}

func TestCalleeWindow(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	ny := mustZone(t, "America/New_York")
	utc := func(day, h, m int) time.Time { return time.Date(2024, 1, day, h, m, 0, 0, time.UTC) }
	tk := mustTask(t, `"work_hour": [{"begin": "8:00", "end": "18:00"}], "work_week": [1,2,3,4,5],
		"holiday": [{"begin": "2024-01-08 00:00", "end": "2024-01-09 00:00"}]`, sh)
	// Wednesday 09:00 in Shanghai is Tuesday 20:00 in New York.
	checkWindows(t, "task", tk, nil, []windowCase{{utc(3, 1, 0), true, ReasonOpen, time.Time{}}})
	checkWindows(t, "callee", tk, ny, []windowCase{
		{utc(3, 1, 0), false, ReasonOffHours, utc(3, 13, 0)},
		{utc(3, 13, 0), true, ReasonOpen, time.Time{}}, // 08:00 EST, 21:00 in Shanghai
		{utc(6, 14, 0), false, ReasonOffDay, utc(8, 16, 0)},
		// The holiday is Shanghai's Monday (Sunday 16:00 to Monday 16:00
		// UTC), so the callee's Monday opens when it ends.
		{utc(8, 13, 0), false, ReasonHoliday, utc(8, 16, 0)},
	})
	// nil means the task's zone.
	checkWindows(t, "callee nil", tk, nil, []windowCase{{utc(3, 13, 0), false, ReasonOffHours, utc(4, 0, 0)}})
	if open, why, next := tk.CalleeWindow(utc(3, 13, 0), nil); open || why != ReasonOffHours || !next.Equal(utc(4, 0, 0)) {
		t.Errorf("CalleeWindow(nil) = %v %q %v", open, why, next)
	}
	tk.Enable = false
	checkWindows(t, "callee disabled", tk, ny, []windowCase{{utc(3, 13, 0), false, ReasonDisabled, time.Time{}}})
}

// TestWindowNextExhaustive checks Window against a minute-by-minute
// scan around the DST changes of both hemispheres: the search by
// candidate boundaries must find the very first open minute (every
// boundary in these tasks is on a whole minute). The holidays begin while
// the task is closed and end inside a range, so only a holiday end can be
// the answer there.
func TestWindowNextExhaustive(t *testing.T) {
	tasks := []struct {
		params string
		zone   string
	}{
		{`"work_hour": [{"begin": "8:00", "end": "12:00"}, {"begin": "14:00", "end": "18:00"}], "work_week": [1,2,3,4,5],
			"holiday": [{"begin": "2024-03-08 10:00", "end": "2024-03-11 09:15"}, {"begin": "2024-03-12 19:00", "end": "2024-03-13 09:40"},
			{"begin": "2024-10-29 19:00", "end": "2024-10-30 15:10"}, {"begin": "2024-11-01 17:00", "end": "2024-11-04 11:00"}]`, "America/New_York"},
		{`"work_hour": [{"begin": "22:00", "end": "6:00"}, {"begin": "1:30", "end": "2:45"}], "work_week": [0, 3, 6],
			"holiday": [{"begin": "2024-10-26 21:00", "end": "2024-10-27 02:40"}, {"begin": "2024-03-29 21:00", "end": "2024-03-31 01:10"}]`, "Europe/Berlin"},
		{`"work_week": [2], "start_time": "2024-03-05 13:00", "stop_time": "2024-12-01 00:00",
			"holiday": [{"begin": "2024-04-01 12:00", "end": "2024-04-02 13:00"}, {"begin": "2024-10-07 12:00", "end": "2024-10-08 09:03"}]`, "Australia/Lord_Howe"},
	}
	const sampleDays, scanDays = 6, 10
	bases := []struct {
		m time.Month
		d int
	}{{3, 7}, {3, 28}, {4, 4}, {10, 3}, {10, 24}, {10, 31}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tasks {
		loc := mustZone(t, tc.zone)
		tk := mustTask(t, `"timezone": "`+tc.zone+`", `+tc.params, time.UTC)
		for _, b := range bases {
			base := time.Date(2024, b.m, b.d, 0, 0, 0, 0, loc)
			// firstOpen[i] is the first open minute at or after minute i.
			n := (sampleDays + scanDays) * 24 * 60
			firstOpen := make([]time.Time, n+1)
			for i := n - 1; i >= 0; i-- {
				m := base.Add(time.Duration(i) * time.Minute)
				if tk.open(m, loc) {
					firstOpen[i] = m
				} else {
					firstOpen[i] = firstOpen[i+1]
				}
			}
			closed := 0
			for i := 0; i < sampleDays*24*60; i += 1 + rng.IntN(7) {
				at := base.Add(time.Duration(i)*time.Minute + time.Duration(rng.IntN(60))*time.Second)
				want := firstOpen[i]
				if !want.Equal(base.Add(time.Duration(i) * time.Minute)) {
					want = firstOpen[i+1]
				} else {
					want = at
				}
				open, why, next := tk.Window(at)
				if !open {
					closed++
				}
				if open != want.Equal(at) || !next.Equal(want) || open != (why == ReasonOpen) {
					t.Errorf("%s at %s: (%v, %q, %s), scan says %s", tc.zone, at.In(loc), open, why, fmtTime(next), fmtTime(want))
				}
			}
			if closed == 0 {
				t.Errorf("%s from %s: never closed; the test proves nothing", tc.zone, base)
			}
		}
	}
}

func ExampleTask_Window() {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	tk, _ := ParseTask("cti_queue_dialer_task@node1", "cti_queue_dialer_task@template", "sales", `{"params": {
		"line_group": ["g1"], "limit": 10, "number_queue": "q1", "destination_extension": "8888",
		"work_hour": [{"begin": "8:00", "end": "12:00"}, {"begin": "14:00", "end": "18:00"}], "work_week": [1,2,3,4,5]}}`, "", sh)
	open, why, next := tk.Window(time.Date(2024, 1, 5, 18, 30, 0, 0, sh)) // a Friday
	fmt.Println(open, why, next.Format("Mon 2006-01-02 15:04"))
	// Output: false outside work_hour Mon 2024-01-08 08:00
}

// BenchmarkWindow measures the check a runner makes before each claim
// (open) and when it waits (closed over a weekend: next is searched).
func BenchmarkWindow(b *testing.B) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		b.Fatal(err)
	}
	tk, err := ParseTask(hostKey, tmplKey, "t", `{"params": {"line_group": "g1", "limit": 1, "number_queue": "q", "destination_extension": "1",
		"work_hour": [{"begin": "8:00", "end": "12:00"}, {"begin": "14:00", "end": "18:00"}], "work_week": [1,2,3,4,5],
		"holiday": [{"begin": "2024-01-08", "end": "2024-01-09"}]}}`, "", ny)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		at   time.Time
	}{{"open", time.Date(2024, 1, 3, 15, 0, 0, 0, ny)}, {"closed", time.Date(2024, 1, 5, 18, 30, 0, 0, ny)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				tk.Window(c.at)
			}
		})
	}
}
