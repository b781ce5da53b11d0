package schedule

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// sharedCases is testdata/cases.json: the cases pwa/static/schedule.js runs too.
type sharedCases struct {
	Cases []struct {
		Name     string `json:"name"`
		Schedule Spec   `json:"schedule"`
		Checks   []struct {
			At    time.Time  `json:"at"`
			Awake bool       `json:"awake"`
			Next  *time.Time `json:"next"`
		} `json:"checks"`
	} `json:"cases"`
	Invalid []struct {
		Name     string `json:"name"`
		Schedule Spec   `json:"schedule"`
		Error    string `json:"error"`
	} `json:"invalid"`
}

func loadCases(t *testing.T) sharedCases {
	t.Helper()
	raw, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var c sharedCases
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Cases) < 5 || len(c.Invalid) < 5 {
		t.Fatalf("testdata/cases.json has %d cases and %d invalid ones", len(c.Cases), len(c.Invalid))
	}
	return c
}

// TestSharedCases runs the DST, midnight-wrap and exception cases the PWA runs too.
func TestSharedCases(t *testing.T) {
	for _, c := range loadCases(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			s, err := Parse(c.Schedule)
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range c.Checks {
				if got := s.Awake(ch.At); got != ch.Awake {
					t.Errorf("Awake(%s) = %v, want %v", ch.At.Format(time.RFC3339), got, ch.Awake)
				}
				got := s.Next(ch.At)
				switch {
				case ch.Next == nil && !got.IsZero():
					t.Errorf("Next(%s) = %s, want no change", ch.At.Format(time.RFC3339), got.UTC().Format(time.RFC3339))
				case ch.Next != nil && !got.Equal(*ch.Next):
					t.Errorf("Next(%s) = %s, want %s", ch.At.Format(time.RFC3339), got.UTC().Format(time.RFC3339), ch.Next.Format(time.RFC3339))
				}
				if ch.Next != nil { // Next is where Awake flips, and not before
					if s.Awake(*ch.Next) == ch.Awake {
						t.Errorf("Awake(next %s) = %v: no change there", ch.Next.Format(time.RFC3339), ch.Awake)
					}
					if s.Awake(ch.Next.Add(-time.Second)) != ch.Awake {
						t.Errorf("Awake(next-1s) changed before next %s", ch.Next.Format(time.RFC3339))
					}
				}
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range loadCases(t).Invalid {
		t.Run(c.Name, func(t *testing.T) {
			_, err := Parse(c.Schedule)
			if err == nil || !strings.Contains(err.Error(), c.Error) {
				t.Fatalf("Parse: %v, want an error containing %q", err, c.Error)
			}
		})
	}
	exc := map[string][]string{}
	for i := range MaxExceptions + 1 {
		exc[time.Date(2027, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)] = nil
	}
	if _, err := Parse(Spec{TimeZone: "UTC", Exceptions: exc}); err == nil || !strings.Contains(err.Error(), "at most 64 dates") {
		t.Fatalf("65 exceptions: %v", err)
	}
	delete(exc, "2027-01-01")
	if _, err := Parse(Spec{TimeZone: "UTC", Exceptions: exc}); err != nil {
		t.Fatalf("64 exceptions: %v", err)
	}
}

func TestParseNormalizes(t *testing.T) {
	s, err := Parse(Spec{TimeZone: "Europe/Berlin", Week: map[string][]string{"mon": {"07:00-19:00"}, "tue": {}}})
	if err != nil {
		t.Fatal(err)
	}
	sp := s.Spec()
	if sp.AsleepView != ViewBlack || len(sp.Week) != 1 || sp.Exceptions != nil {
		t.Fatalf("Spec() = %+v, want the black view, Monday only, no exceptions", sp)
	}
}

// FuzzParse: whatever an administrator sends, Parse refuses it or gives a schedule
// whose evaluation neither panics nor runs away, and whose spec parses again alike.
func FuzzParse(f *testing.F) {
	f.Add(`{"time_zone":"Europe/Berlin","week":{"sun":["22:00-06:00"]},"exceptions":{"2026-12-25":[]}}`, int64(1798000000))
	f.Add(`{"time_zone":"UTC","week":{"mon":["00:00-24:00"]}}`, int64(0))
	f.Fuzz(func(t *testing.T, js string, unix int64) {
		var sp Spec
		if json.Unmarshal([]byte(js), &sp) != nil {
			return
		}
		s, err := Parse(sp)
		if err != nil {
			return
		}
		at := time.Unix(unix%(4<<30), 0)
		awake := s.Awake(at)
		if n := s.Next(at); !n.IsZero() && (!n.After(at) || s.Awake(n) == awake) {
			t.Fatalf("Next(%s) = %s: not a change after it", at, n)
		}
		s2, err := Parse(s.Spec())
		if err != nil || s2.Awake(at) != awake {
			t.Fatalf("the normalized spec does not parse alike: %v", err)
		}
	})
}
