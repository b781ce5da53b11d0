package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// The dashboard of deploy/grafana, as much of Grafana's model as the test reads.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) (grafanaDashboard, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "kioskfeed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("deploy/grafana/kioskfeed.json: %v", err)
	}
	return d, raw
}

// promQuery is what the dashboard test needs of one PromQL expression: the metric names
// it selects, the label names it matches or groups by, and those it groups by alone (the
// only ones a legend may name).
type promQuery struct {
	metrics, labels, groupBy []string
}

// promKeywords are PromQL's words that are neither functions (those are followed by
// "(") nor metrics.
var promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

// parsePromQL is a small tokenizer, not a PromQL parser: it drops string literals,
// numbers, ranges ("[5m]") and Grafana's variables ("$instance"), takes a word before
// "(" for a function (or an aggregation), the words inside by/without/on/ignoring(...)
// and before a matcher's operator inside {...} for label names, and every other word
// for a metric name. It is enough for the dashboard's expressions, and its own test
// pins what it reads.
func parsePromQL(expr string) (promQuery, error) {
	var q promQuery
	add := func(l *[]string, s string) {
		if !slices.Contains(*l, s) {
			*l = append(*l, s)
		}
	}
	isWord := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	inBraces, groupDepth, depth := false, -1, 0
	grouping := false // inside by (...), without (...), on (...) or ignoring (...)
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == ',':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return q, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return q, fmt.Errorf("unterminated range at %d", i)
			}
			i += j + 1
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return q, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += j + 1
			}
			for i < len(expr) && isWord(expr[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isWord(expr[i], false) || expr[i] == '.' || expr[i] == '+' && (expr[i-1] == 'e' || expr[i-1] == 'E')) {
				i++
			}
		case c == '{':
			if inBraces {
				return q, fmt.Errorf("nested { at %d", i)
			}
			inBraces = true
			i++
		case c == '}':
			inBraces = false
			i++
		case c == '(':
			depth++
			i++
		case c == ')':
			if grouping && depth == groupDepth {
				grouping = false
			}
			depth--
			i++
		case isWord(c, true):
			j := i
			for j < len(expr) && isWord(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			next := byte(0)
			if k < len(expr) {
				next = expr[k]
			}
			switch lw := strings.ToLower(word); {
			case inBraces || grouping:
				add(&q.labels, word)
				if grouping {
					add(&q.groupBy, word)
				}
			case (lw == "by" || lw == "without" || lw == "on" || lw == "ignoring" || lw == "group_left" || lw == "group_right") && next == '(':
				grouping, groupDepth = true, depth+1
			case next == '(' || promKeywords[lw] || isAggregation(expr[k:]):
				// a function, an aggregation or an operator word
			default:
				add(&q.metrics, word)
			}
			i = j
		default: // operators: = ! ~ + - * / % ^ < >
			i++
		}
	}
	if inBraces || depth != 0 {
		return q, errors.New("unbalanced { or (")
	}
	return q, nil
}

// isAggregation reports whether rest (what follows a word) starts with a by or without
// clause: the word before it is an aggregation, as in "sum by (le) (...)".
func isAggregation(rest string) bool {
	for _, kw := range []string{"by", "without"} {
		if r, ok := strings.CutPrefix(strings.ToLower(rest), kw); ok && strings.HasPrefix(strings.TrimLeft(r, " "), "(") {
			return true
		}
	}
	return false
}

// TestParsePromQL pins what the tokenizer takes for a metric and for a label.
func TestParsePromQL(t *testing.T) {
	for _, tc := range []struct {
		name, expr              string
		metrics, labels, groups []string
	}{
		{"quantile", `histogram_quantile(0.99, sum by (le, route) (rate(kioskfeed_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`,
			[]string{"kioskfeed_http_request_duration_seconds_bucket"}, []string{"le", "route", "instance"}, []string{"le", "route"}},
		{"matchers with operators in strings", `max(deriv(kioskfeed_jetstream_last_seq{stream="FEEDS",instance!~"a(b)|c{d}"}[5m])) * 60`,
			[]string{"kioskfeed_jetstream_last_seq"}, []string{"stream", "instance"}, nil},
		{"binary and keywords", `sum(rate(a_total[1m])) / ignoring(code) sum without (code) (rate(b_total{code!="200"}[1m])) > bool 1e-3 or on() vector(0)`,
			[]string{"a_total", "b_total"}, []string{"code"}, []string{"code"}},
		{"template query", `label_values(kioskfeed_ws_connections, instance)`,
			[]string{"kioskfeed_ws_connections", "instance"}, nil, nil},
		{"by after the aggregation", `sum(rate(x_total[5m])) by (outcome)`,
			[]string{"x_total"}, []string{"outcome"}, []string{"outcome"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := parsePromQL(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(q.metrics, tc.metrics) || !slices.Equal(q.labels, tc.labels) || !slices.Equal(q.groupBy, tc.groups) {
				t.Errorf("got metrics %q labels %q by %q, want %q %q %q", q.metrics, q.labels, q.groupBy, tc.metrics, tc.labels, tc.groups)
			}
		})
	}
	for _, bad := range []string{`rate(x{a="b"[5m])`, `sum(x`, `x{a="b}`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("parsePromQL(%q): no error", bad)
		}
	}
}

// TestGrafanaDashboardImports checks the JSON Grafana's import needs: a uid, a title,
// a schema version, panels with unique ids, a title, a grid position inside the 24
// columns, a data source and at least one query each; and that every variable a query
// names is one the dashboard defines.
func TestGrafanaDashboardImports(t *testing.T) {
	d, raw := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q title %q schemaVersion %d: want a uid, a title and a schema version >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("templating: want the variables datasource and instance, have %v", vars)
	}
	for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(string(raw), -1) {
		if !vars[m[1]] {
			t.Errorf("the dashboard uses $%s, which it does not define", m[1])
		}
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("%s: id missing or repeated", where)
		}
		ids[p.ID] = true
		g := p.GridPos
		if p.Title == "" || p.Type == "" || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: type %q gridPos %+v: want a title, a type and a place inside 24 columns", where, p.Type, g)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Datasource) == 0 || !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("%s: datasource %s, want the ${datasource} variable", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: target %q with refId %q: want an expression and a unique refId", where, tg.Expr, tg.RefID)
			}
			refs[tg.RefID] = true
			queries++
		}
	}
	if queries < 10 {
		t.Errorf("%d queries in the dashboard, want the issue's ten subjects at least", queries)
	}
}

// TestGrafanaDashboardMetricsExist: every metric name a query of the dashboard (or of
// its variables) uses is a family a real server's /metrics exports, every label it
// matches or groups by is on that family's series, and every {{label}} a legend names
// is one its query groups by.
//
// The check is on families (the names of # TYPE lines), after the server was made to
// export every series: client_golang lists a labelled family only once it has one
// child, so the test pairs a tablet, connects it (a handshake, a replay), has the
// server close a socket (a close code), and publishes one good and one refused event.
// A metric whose family never appears would fail the test rather than pass on an empty
// exposition; the polling waits only for the server to finish counting.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	d, _ := readDashboard(t)
	type use struct{ where, expr, legend string }
	var uses []use
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			uses = append(uses, use{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr, tg.LegendFormat})
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			uses = append(uses, use{"variable " + v.Name, v.Definition, ""})
		}
	}

	sys := startSystem(t, t.TempDir(), freeAddr(t))
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(sys.base, "http") + "/ws"
	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"dashboard test","feeds":["lobby"]}`)["key"].(string)
	producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"dashboard"}`)
	pin := adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)
	tab, err := pairingtest.NewTablet(sys.base)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Pair(ctx, "lobby", pin, "dashboard"); err != nil {
		t.Fatal(err)
	}
	c, err := bridgetest.Dial(ctx, wsURL, sys.base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	if _, err := c.Handshake(tab, wsURL, 0, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.Collect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A socket that sends a binary frame: the server closes it 1003.
	bad, err := bridgetest.Dial(ctx, wsURL, sys.base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bad.Abort() })
	var ce *bridgetest.CloseError
	for end := time.Now().Add(10 * time.Second); ; {
		m, err := bad.Next(time.Until(end))
		if errors.As(err, &ce) {
			break
		}
		if err != nil {
			t.Fatalf("the socket with a bad first message: %v, want a close", err)
		}
		if m.Type == "challenge" {
			if err := bad.SendFrame(ws.NewBinaryFrame([]byte("not text"))); err != nil {
				t.Fatal(err)
			}
		}
	}
	req, _ := http.NewRequest("POST", sys.base+"/api/feeds/lobby/events", strings.NewReader(`{"kind":"nonsense","data":{}}`))
	req.Header.Set("Authorization", "Bearer "+producer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("publish a bad kind: %v %v, want 400", resp, err)
	}
	resp.Body.Close()

	labelsOf := func(samples map[string]float64) map[string]map[string]bool {
		out := map[string]map[string]bool{}
		for s := range samples {
			name, rest, _ := strings.Cut(s, "{")
			if out[name] == nil {
				out[name] = map[string]bool{}
			}
			for _, m := range regexp.MustCompile(`(\w+)="`).FindAllStringSubmatch(rest, -1) {
				out[name][m[1]] = true
			}
		}
		return out
	}
	// Labels Prometheus adds at scrape time, which /metrics cannot show.
	scrapeLabels := map[string]bool{"instance": true, "job": true}
	var problems []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		samples, _, typ := scrape(t, sys.base)
		labels := labelsOf(samples)
		problems = problems[:0]
		for _, u := range uses {
			q, err := parsePromQL(u.expr)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %q: %v", u.where, u.expr, err))
				continue
			}
			if len(q.metrics) == 0 {
				problems = append(problems, fmt.Sprintf("%s: %q names no metric", u.where, u.expr))
			}
			have := map[string]bool{}
			for _, m := range q.metrics {
				if u.where[:8] == "variable" && m == "instance" {
					continue // label_values(metric, label)
				}
				family := m
				if typ[m] == "" {
					for _, suf := range []string{"_bucket", "_sum", "_count"} {
						if base, ok := strings.CutSuffix(m, suf); ok && (typ[base] == "histogram" || typ[base] == "summary" && suf != "_bucket") {
							family = base
						}
					}
				}
				if typ[family] == "" {
					problems = append(problems, fmt.Sprintf("%s: %s is not exported by /metrics", u.where, m))
				}
				for l := range labels[m] {
					have[l] = true
				}
			}
			for _, l := range q.labels {
				if !have[l] && !scrapeLabels[l] {
					problems = append(problems, fmt.Sprintf("%s: label %q is on no series of %v", u.where, l, q.metrics))
				}
			}
			for _, m := range regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`).FindAllStringSubmatch(u.legend, -1) {
				if !slices.Contains(q.groupBy, m[1]) {
					problems = append(problems, fmt.Sprintf("%s: legend names {{%s}}, which the query does not group by", u.where, m[1]))
				}
			}
		}
		if len(problems) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(problems) > 0 {
		t.Errorf("deploy/grafana/kioskfeed.json against /metrics:\n  %s", strings.Join(problems, "\n  "))
	}
}
