package dialer

import (
	"slices"
	"time"
)

// Reason says why a task (or a callee) may not be dialed now.
type Reason string

// The reasons Window and CalleeWindow give; ReasonOpen when dialing is
// allowed.
const (
	ReasonOpen        Reason = ""
	ReasonDisabled    Reason = "disabled"
	ReasonBeforeStart Reason = "before start_time"
	ReasonAfterStop   Reason = "after stop_time"
	ReasonHoliday     Reason = "holiday"
	ReasonOffDay      Reason = "outside work_week"
	ReasonOffHours    Reason = "outside work_hour"
)

// searchDays bounds the search for the next opening. Only holidays can
// keep a task with a work week closed for long, and a holiday the search
// starts in is skipped before the bound applies.
const searchDays = 400

// Window reports whether the task may dial at t (any zone; the task's
// times are evaluated in tk.Location). When it may not, why says which
// rule forbids it, checked in this order: disabled, after stop_time,
// before start_time, holiday, outside work_week, outside work_hour. next
// is the earliest instant >= t when the task opens (t itself when open),
// or zero when it never will: disabled, after stop_time, or nothing opens
// within 400 days.
//
// Ranges are half-open: start_time, holiday ends and work_hour begins are
// open instants; stop_time, holiday begins and work_hour ends are closed.
// A work_hour range that crosses midnight (22:00-06:00) belongs to the day
// it begins on: Saturday 03:00 is open when Friday is in work_week, and
// Monday 03:00 is not when Sunday is off. Without work_hour, a work day is
// open all day.
//
// Wall-clock times are taken in the zone on the day itself, so 8:00-12:00
// is 8:00-12:00 local on DST days too (a 3- or 5-hour day is not shifted).
// A wall time the clocks skip (02:30 on a spring-forward day) is taken as
// the moment of the jump, so a range never opens before its local begin
// time and a range entirely inside the gap is empty that day; a wall time
// that occurs twice (autumn) is taken at its first occurrence.
func (tk *Task) Window(t time.Time) (open bool, why Reason, next time.Time) {
	return tk.window(t, tk.zone())
}

// CalleeWindow is Window with work_week and work_hour evaluated in the
// callee's zone loc, so nobody is called at 3 a.m. their time; enable,
// start_time, stop_time and holidays are judged as in Window (they are
// instants fixed in the task's zone). The task's own work hours in its
// zone are not part of it: callers check Window for the task as well. If
// the two never overlap (work hours 8-18 for a task in Shanghai and a
// callee in New York) such a callee is never dialed. loc nil means the
// task's zone.
func (tk *Task) CalleeWindow(t time.Time, loc *time.Location) (open bool, why Reason, next time.Time) {
	if loc == nil {
		loc = tk.zone()
	}
	return tk.window(t, loc)
}

func (tk *Task) zone() *time.Location {
	if tk.Location == nil {
		return time.Local
	}
	return tk.Location
}

// window is Window with work_week and work_hour evaluated in loc.
func (tk *Task) window(t time.Time, loc *time.Location) (bool, Reason, time.Time) {
	if !tk.Enable {
		return false, ReasonDisabled, time.Time{}
	}
	if tk.afterStop(t) {
		return false, ReasonAfterStop, time.Time{}
	}
	var why Reason
	switch {
	case tk.Start != nil && t.Before(*tk.Start):
		why = ReasonBeforeStart
	case tk.holiday(t) >= 0:
		why = ReasonHoliday
	default:
		why = tk.schedule(t, loc)
	}
	if why == ReasonOpen {
		return true, ReasonOpen, t
	}
	return false, why, tk.next(t, loc)
}

func (tk *Task) afterStop(t time.Time) bool { return tk.Stop != nil && !t.Before(*tk.Stop) }

// holiday returns the index of the holiday containing t, the one ending
// last when several do, or -1.
func (tk *Task) holiday(t time.Time) int {
	found := -1
	for i, h := range tk.Holidays {
		if !t.Before(h.Begin) && t.Before(h.End) && (found < 0 || h.End.After(tk.Holidays[found].End)) {
			found = i
		}
	}
	return found
}

// workDay reports whether the civil date y-m-d is in the work week.
func (tk *Task) workDay(y int, m time.Month, d int) bool {
	if len(tk.WorkWeek) == 0 {
		return true
	}
	return slices.Contains(tk.WorkWeek, time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Weekday())
}

// bounds are the instants of r on the civil date y-m-d in loc.
func (r ClockRange) bounds(y int, m time.Month, d int, loc *time.Location) (begin, end time.Time) {
	endDay := d
	if r.crosses() {
		endDay++
	}
	return wallClock(y, m, d, r.Begin, loc), wallClock(y, m, endDay, r.End, loc)
}

// schedule judges work_week and work_hour at t in loc.
func (tk *Task) schedule(t time.Time, loc *time.Location) Reason {
	if len(tk.WorkWeek) == 0 && len(tk.WorkHours) == 0 {
		return ReasonOpen
	}
	y, m, d := t.In(loc).Date()
	today := tk.workDay(y, m, d)
	if len(tk.WorkHours) == 0 {
		if today {
			return ReasonOpen
		}
		return ReasonOffDay
	}
	if today {
		for _, r := range tk.WorkHours {
			if b, e := r.bounds(y, m, d, loc); !t.Before(b) && t.Before(e) {
				return ReasonOpen
			}
		}
	}
	// Yesterday's ranges that cross midnight reach into today.
	if tk.workDay(y, m, d-1) {
		for _, r := range tk.WorkHours {
			if !r.crosses() {
				continue
			}
			if b, e := r.bounds(y, m, d-1, loc); !t.Before(b) && t.Before(e) {
				return ReasonOpen
			}
		}
	}
	if !today {
		return ReasonOffDay
	}
	return ReasonOffHours
}

// open reports whether every rule but enable allows dialing at t.
func (tk *Task) open(t time.Time, loc *time.Location) bool {
	return !tk.afterStop(t) && (tk.Start == nil || !t.Before(*tk.Start)) &&
		tk.holiday(t) < 0 && tk.schedule(t, loc) == ReasonOpen
}

// next returns the earliest open instant >= from, or zero. The open
// instants are an intersection of half-open ranges, so the first one is
// from itself or the begin of one of them: start_time, a holiday's end, a
// work_hour begin on a work day, or the start of a work day when there are
// no work hours. Only those candidates are tried, day by day.
func (tk *Task) next(from time.Time, loc *time.Location) time.Time {
	if tk.Start != nil && from.Before(*tk.Start) {
		from = *tk.Start
	}
	// Skip the holidays from is in; each jump lands on a later end, so
	// this ends, and long holidays do not eat into the search bound.
	for range len(tk.Holidays) + 1 {
		i := tk.holiday(from)
		if i < 0 {
			break
		}
		from = tk.Holidays[i].End
	}
	if tk.afterStop(from) {
		return time.Time{}
	}
	if tk.open(from, loc) {
		return from
	}
	limit := from.AddDate(0, 0, searchDays)
	var ends []time.Time
	for _, h := range tk.Holidays {
		if h.End.After(from) && h.End.Before(limit) {
			ends = append(ends, h.End)
		}
	}
	y, m, d := from.In(loc).Date()
	var cands []time.Time
	for i := 0; ; i++ {
		dayStart := wallClock(y, m, d+i, 0, loc)
		if dayStart.After(limit) {
			return time.Time{}
		}
		dayEnd := wallClock(y, m, d+i+1, 0, loc)
		cands = cands[:0]
		if tk.workDay(y, m, d+i) {
			if len(tk.WorkHours) == 0 {
				cands = append(cands, dayStart)
			}
			for _, r := range tk.WorkHours {
				b, _ := r.bounds(y, m, d+i, loc)
				cands = append(cands, b)
			}
		}
		for _, e := range ends {
			if !e.Before(dayStart) && e.Before(dayEnd) {
				cands = append(cands, e)
			}
		}
		slices.SortFunc(cands, time.Time.Compare)
		for _, c := range cands {
			if c.Before(from) {
				continue
			}
			if tk.afterStop(c) {
				return time.Time{} // candidates only grow from here
			}
			if tk.open(c, loc) {
				return c
			}
		}
	}
}

// wallClock is the instant the clocks in loc read since past midnight on
// the civil date y-m-d (since may be 24h: the next midnight). Unlike
// time.Date, whose choice depends on the zone's offset sign (02:30 on a
// New York spring-forward day becomes 01:30 EST, in Berlin 03:30 CEST), a
// skipped wall time is the instant of the jump, and a repeated one its
// first occurrence.
func wallClock(y int, m time.Month, d int, since time.Duration, loc *time.Location) time.Time {
	h, mi, s, ns := int(since/time.Hour), int(since%time.Hour/time.Minute), int(since%time.Minute/time.Second), int(since%time.Second)
	t := time.Date(y, m, d, h, mi, s, ns, loc)
	want := time.Date(y, m, d, h, mi, s, ns, time.UTC)
	switch got := naive(t); {
	case got.Before(want): // skipped; t is before the jump
		if _, end := t.ZoneBounds(); !end.IsZero() {
			return end
		}
	case got.After(want): // skipped; t is after the jump
		if start, _ := t.ZoneBounds(); !start.IsZero() {
			return start
		}
	default:
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		_, off := t.Zone()
		_, prev := start.Add(-time.Nanosecond).Zone()
		if back := time.Duration(prev-off) * time.Second; back > 0 {
			if alt := t.Add(-back); alt.Before(start) && naive(alt).Equal(want) {
				return alt
			}
		}
	}
	return t
}

// naive is t's wall clock as if it were UTC, for comparing wall clocks.
func naive(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}
