package admin

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Formatting for the dashboard's templates.

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long ago, roughly, in the words a person would use.
func ago(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
}

// shortUserAgent names the browser and the system of a User-Agent string, such as
// "Chrome 126 on Android", or shortens it when it is not a browser's.
func shortUserAgent(ua string) string {
	if ua == "" {
		return "unknown"
	}
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"SamsungBrowser/", "Samsung Internet"}, {"Firefox/", "Firefox"},
		{"CriOS/", "Chrome"}, {"Chrome/", "Chrome"}, {"Version/", "Safari"},
	} {
		if _, rest, ok := strings.Cut(ua, b.token); ok {
			version, _, _ := strings.Cut(rest, ".")
			version, _, _ = strings.Cut(version, " ")
			browser = b.name + " " + version
			break
		}
	}
	system := ""
	for _, s := range []struct{ token, name string }{
		{"iPad", "iPadOS"}, {"iPhone", "iOS"}, {"Android", "Android"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case len(ua) > 40:
		return truncate(ua, 39) + "…"
	}
	return ua
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
