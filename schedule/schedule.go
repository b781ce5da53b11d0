package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of a schedule (docs/protocol.md §10, #limits-schedules): everything an
// administrator's schedule makes every instance and every tablet of the feed evaluate.
const (
	// MaxRangesPerDay bounds the awake ranges of one weekday or exception date.
	MaxRangesPerDay = 4
	// MaxExceptions bounds the exception dates.
	MaxExceptions = 64
	// MaxTimeZone bounds the time zone's name, in bytes.
	MaxTimeZone = 64
	// NextHorizon is how far Next looks for a change: past it the state is taken to
	// hold (a schedule asleep every day but a date months away answers no change).
	NextHorizon = 8 * 24 * time.Hour
)

// The asleep views: what a tablet shows while its feed is scheduled asleep.
const (
	ViewBlack = "black"
	ViewClock = "clock"
)

// Days are the keys of Spec.Week, Monday first.
var Days = [7]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// Spec is a schedule as the admin API takes it and the tablets get it (the JSON of
// docs/protocol.md #schedule-format).
type Spec struct {
	// TimeZone is an IANA zone name ("Europe/Berlin", "UTC"): the ranges are wall
	// clock times there.
	TimeZone string `json:"time_zone"`
	// Week holds each weekday's awake ranges ("HH:MM-HH:MM"), by Days; a day that is
	// missing or empty is asleep all day.
	Week map[string][]string `json:"week"`
	// Exceptions holds dates ("YYYY-MM-DD", in TimeZone) whose ranges replace the
	// weekday's; an empty list is asleep all day.
	Exceptions map[string][]string `json:"exceptions,omitempty"`
	// AsleepView is ViewBlack (the default) or ViewClock.
	AsleepView string `json:"asleep_view"`
}

// span is one awake range in minutes of the wall clock; end < start wraps past midnight
// into the next day.
type span struct{ start, end int }

func (s span) wraps() bool { return s.end < s.start }

// Schedule is a parsed Spec. It is immutable and safe for concurrent use.
type Schedule struct {
	spec Spec
	loc  *time.Location
	week [7][]span // by time.Weekday: 0 Sunday
	exc  map[string][]span
}

// ErrInvalid wraps every refusal of Parse; its message says what to fix.
var ErrInvalid = errors.New("invalid schedule")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse checks spec and returns its schedule, with the spec normalized (the asleep
// view's default filled in, empty days dropped).
func Parse(spec Spec) (*Schedule, error) {
	tz := spec.TimeZone
	if tz == "" || len(tz) > MaxTimeZone || tz == "Local" || strings.ContainsAny(tz, " \\") || strings.HasPrefix(tz, "/") || strings.Contains(tz, "..") {
		return nil, invalid(`"time_zone" must be an IANA time zone name such as "Europe/Berlin" or "UTC"`)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, invalid(`"time_zone" %q is not a time zone this server knows (an IANA name such as "Europe/Berlin")`, tz)
	}
	s := &Schedule{loc: loc, exc: map[string][]span{}}
	norm := Spec{TimeZone: tz, Week: map[string][]string{}, AsleepView: spec.AsleepView}
	switch norm.AsleepView {
	case "":
		norm.AsleepView = ViewBlack
	case ViewBlack, ViewClock:
	default:
		return nil, invalid(`"asleep_view" must be "black" or "clock"`)
	}
	for day, ranges := range spec.Week {
		i := slices.Index(Days[:], day)
		if i < 0 {
			return nil, invalid(`"week" has %q: its keys are mon, tue, wed, thu, fri, sat and sun`, day)
		}
		spans, err := parseRanges(`"week"."`+day+`"`, ranges)
		if err != nil {
			return nil, err
		}
		if len(spans) > 0 {
			s.week[(i+1)%7] = spans
			norm.Week[day] = slices.Clone(ranges)
		}
	}
	if len(spec.Exceptions) > MaxExceptions {
		return nil, invalid(`"exceptions" may hold at most %d dates`, MaxExceptions)
	}
	if len(spec.Exceptions) > 0 {
		norm.Exceptions = map[string][]string{}
	}
	for date, ranges := range spec.Exceptions {
		if _, err := time.Parse(time.DateOnly, date); err != nil || len(date) != len(time.DateOnly) {
			return nil, invalid(`"exceptions" has %q: each key is a date, YYYY-MM-DD`, truncate(date))
		}
		spans, err := parseRanges(`"exceptions"."`+date+`"`, ranges)
		if err != nil {
			return nil, err
		}
		s.exc[date] = spans
		norm.Exceptions[date] = append([]string{}, ranges...)
	}
	s.spec = norm
	return s, nil
}

func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// parseRanges reads "HH:MM-HH:MM" ranges: HH 00–23 (24 for an end of 24:00), MM 00–59,
// start ≠ end; end before start wraps past midnight.
func parseRanges(what string, ranges []string) ([]span, error) {
	if len(ranges) > MaxRangesPerDay {
		return nil, invalid(`%s may hold at most %d ranges`, what, MaxRangesPerDay)
	}
	out := make([]span, 0, len(ranges))
	for _, r := range ranges {
		a, b, ok := strings.Cut(r, "-")
		start, ok1 := clock(a, false)
		end, ok2 := clock(b, true)
		if !ok || !ok1 || !ok2 || start == end {
			return nil, invalid(`%s has %q: a range is "HH:MM-HH:MM" (such as "07:30-19:00", or "22:00-06:00" past midnight), start and end differ`, what, truncate(r))
		}
		out = append(out, span{start, end})
	}
	return out, nil
}

// clock reads HH:MM as minutes after midnight; 24:00 only as an end.
func clock(s string, end bool) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || s[0] == '+' || s[0] == '-' || s[3] == '+' || s[3] == '-' || m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, false
	}
	return h*60 + m, true
}

// Spec is the normalized spec the schedule was parsed from. Its maps are shared: do not
// modify them.
func (s *Schedule) Spec() Spec { return s.spec }

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// day is the ranges of a civil date and whether it is an exception.
func (s *Schedule) day(y int, m time.Month, d int) ([]span, bool) {
	date := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	if spans, ok := s.exc[date.Format(time.DateOnly)]; ok {
		return spans, true
	}
	return s.week[date.Weekday()], false
}

// Awake reports whether the schedule is awake at t. The ranges are wall clock times in
// the zone: an hour a DST change skips is skipped, an hour it repeats counts both times.
// A range is awake from its start (inclusive) to its end (exclusive). A range that wraps
// runs into the next date, unless that date is an exception: an exception date's own
// ranges say everything about it, from midnight to midnight.
func (s *Schedule) Awake(t time.Time) bool {
	lt := t.In(s.loc)
	y, mo, d := lt.Date()
	m := lt.Hour()*60 + lt.Minute()
	today, isExc := s.day(y, mo, d)
	for _, r := range today {
		if m >= r.start && (r.wraps() || m < r.end) {
			return true
		}
	}
	if isExc {
		return false
	}
	yesterday, _ := s.day(y, mo, d-1)
	for _, r := range yesterday {
		if r.wraps() && m < r.end {
			return true
		}
	}
	return false
}

// Next is the first instant after t at which Awake changes, looking at most NextHorizon
// ahead; zero when it does not change within that. Changes fall on whole minutes (the
// zones' offsets are whole minutes).
func (s *Schedule) Next(t time.Time) time.Time {
	state := s.Awake(t)
	cur := t.Truncate(time.Minute)
	limit := t.Add(NextHorizon)
	for cur.Before(limit) {
		cand := cur.Add(s.untilBoundary(cur))
		if _, o := cand.In(s.loc).Zone(); o != offset(cur, s.loc) {
			cand = firstOffsetChange(cur, cand, s.loc) // the wall clock jumps there
		}
		if s.Awake(cand) != state {
			return cand
		}
		cur = cand
	}
	return time.Time{}
}

func offset(t time.Time, loc *time.Location) int {
	_, o := t.In(loc).Zone()
	return o
}

// untilBoundary is how long from cur (on a whole minute) to the next wall clock minute
// at which a range of cur's date or of the date before starts or ends, or to midnight.
func (s *Schedule) untilBoundary(cur time.Time) time.Duration {
	lt := cur.In(s.loc)
	y, mo, d := lt.Date()
	m := lt.Hour()*60 + lt.Minute()
	next := 24 * 60
	today, _ := s.day(y, mo, d)
	yesterday, _ := s.day(y, mo, d-1)
	for _, r := range slices.Concat(today, yesterday) {
		for _, b := range [2]int{r.start, r.end} {
			if b > m && b < next {
				next = b
			}
		}
	}
	return time.Duration(next-m) * time.Minute
}

// firstOffsetChange is the first whole minute in (lo, hi] whose zone offset differs
// from lo's, by bisection.
func firstOffsetChange(lo, hi time.Time, loc *time.Location) time.Time {
	o := offset(lo, loc)
	for hi.Sub(lo) > time.Minute {
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Minute)
		if mid.Equal(lo) {
			break
		}
		if offset(mid, loc) == o {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
