package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// displayRun is one `kioskfeed display` in-process, until stop or its own end.
type displayRun struct {
	out, errOut *syncBuffer
	done        chan error
	cancel      context.CancelFunc
}

func startDisplay(t *testing.T, args ...string) *displayRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &displayRun{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		d.done <- run(ctx, append([]string{"display"}, args...), env(nil), d.out, d.errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Errorf("display did not stop within 30s")
		}
	})
	return d
}

// waitOut polls the display's output until re matches, within dur, and returns the match.
func (d *displayRun) waitOut(t *testing.T, re *regexp.Regexp, dur time.Duration) []string {
	t.Helper()
	var m []string
	d.waitFor(t, func(out string) bool { m = re.FindStringSubmatch(out); return m != nil }, re.String(), dur)
	return m
}

// waitEvent polls until the display has shown the event line want ("seq kind data").
func (d *displayRun) waitEvent(t *testing.T, want string, dur time.Duration) {
	t.Helper()
	d.waitFor(t, func(out string) bool { return slices.Contains(eventLines(out), want) }, want, dur)
}

func (d *displayRun) waitFor(t *testing.T, cond func(out string) bool, what string, dur time.Duration) {
	t.Helper()
	deadline := time.Now().Add(dur)
	for !cond(d.out.String()) {
		select {
		case err := <-d.done:
			t.Fatalf("display ended (%v) before showing %q\nstdout:\n%s\nstderr:\n%s", err, what, d.out, d.errOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("display showed no %q within %v\nstdout:\n%s\nstderr:\n%s", what, dur, d.out, d.errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop interrupts the display, as SIGINT does, and returns its result.
func (d *displayRun) stop(t *testing.T) error {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("display did not stop within 30s of the interrupt")
		return nil
	}
}

// eventLines are the display's event lines, as "seq kind data".
func eventLines(out string) []string {
	re := regexp.MustCompile(`(?m)^(\d+) (\w+)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$`)
	var lines []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		lines = append(lines, m[1]+" "+m[2]+" "+m[3])
	}
	return lines
}

func TestDisplayPairsByCodeAndShowsTheFeedLive(t *testing.T) {
	dataDir, stateDir := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	pub := "http://" + addr
	s := startServe(t, dataDir, "--listen", addr, "--public-url", pub)
	admin := s.token // printed at the first start only
	code, key := s.call(t, "POST", "/api/admin/producer-keys", s.token, `{"name":"display test","feeds":["lobby"]}`)
	if code != 201 {
		t.Fatalf("create producer key = %d %v", code, key)
	}
	producer := key["key"].(string)
	publish := func(srv *served, kind, data string) string {
		t.Helper()
		code, res := srv.call(t, "POST", "/api/feeds/lobby/events", producer, `{"kind":"`+kind+`","data":`+data+`}`)
		if code != 202 {
			t.Fatalf("publish = %d %v", code, res)
		}
		return fmt.Sprint(res["seq"])
	}
	first := publish(s, "state", `{"title":"Welcome"}`)

	// Not paired: it shows a code and waits for an administrator.
	d := startDisplay(t, "--server", pub, "--state-dir", stateDir, "--name", "Terminal wall")
	userCode := d.waitOut(t, regexp.MustCompile(`approves code ([A-Z]{4}-[A-Z]{4})\n\s+at (\S+)`), 30*time.Second)
	if !strings.HasSuffix(userCode[2], "/admin/approve?code="+strings.ReplaceAll(userCode[1], "-", "")) {
		t.Fatalf("verification URI %q does not carry the code %s", userCode[2], userCode[1])
	}
	if code, res := s.call(t, "POST", "/api/admin/pair-requests/"+userCode[1]+"/approve", s.token, `{"feed":"lobby"}`); code != 200 {
		t.Fatalf("approve = %d %v", code, res)
	}
	d.waitOut(t, regexp.MustCompile(`-- live \(seq \d+\) --`), 30*time.Second)
	want := []string{first + ` state {"title":"Welcome"}`}
	for i := range 3 {
		seq := publish(s, "item", fmt.Sprintf(`{"text": "item %d"}`, i))
		want = append(want, seq+fmt.Sprintf(` item {"text":"item %d"}`, i))
	}
	d.waitEvent(t, want[len(want)-1], 20*time.Second)
	if got := eventLines(d.out.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("event lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The server restarts: the display comes back by itself and shows what follows,
	// after a catch-up (no second reset).
	if err := s.stop(); err != nil {
		t.Fatalf("stop server: %v", err)
	}
	s = startServe(t, dataDir, "--listen", addr, "--public-url", pub)
	after := publish(s, "item", `{"text":"after the restart"}`)
	want = append(want, after+` item {"text":"after the restart"}`)
	d.waitEvent(t, want[len(want)-1], 30*time.Second)
	if got := eventLines(d.out.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("event lines after the restart:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(d.out.String(), "-- reset"); n != 1 {
		t.Fatalf("%d resets shown, want 1 (the reconnect catches up)\n%s", n, d.out)
	}
	if !strings.Contains(d.errOut.String(), "1012") {
		t.Fatalf("the display did not report the restart's 1012:\n%s", d.errOut)
	}
	// SIGINT: exit 0.
	if err := d.stop(t); err != nil {
		t.Fatalf("display after an interrupt: %v, want nil (exit 0)", err)
	}
	for _, f := range []string{displayKeyFile, displayStateFile} {
		st, err := os.Stat(filepath.Join(stateDir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v, want 0600", f, err, st.Mode().Perm())
		}
	}

	// Started again: the same device, no pairing, and what it missed as a catch-up.
	missed := publish(s, "item", `{"text":"while it was off"}`)
	d2 := startDisplay(t, "--server", pub, "--state-dir", stateDir)
	d2.waitEvent(t, missed+` item {"text":"while it was off"}`, 30*time.Second)
	if strings.Contains(d2.out.String(), "approves code") || strings.Contains(d2.out.String(), "-- reset") {
		t.Fatalf("a restarted display paired again or reset:\n%s", d2.out)
	}
	if got := eventLines(d2.out.String()); len(got) != 1 {
		t.Fatalf("restarted display showed %v, want only the missed event", got)
	}

	// Revoked: it says so, forgets the device, and ends with an error.
	deviceID := regexp.MustCompile(`connected: device (\S+),`).FindStringSubmatch(d2.out.String())[1]
	if code, _ := s.call(t, "DELETE", "/api/admin/devices/"+deviceID, admin, ""); code != 204 {
		t.Fatalf("revoke = %d", code)
	}
	select {
	case err := <-d2.done:
		if !errors.Is(err, errDisplayRevoked) || !strings.Contains(d2.out.String(), "revoked") {
			t.Fatalf("display after revocation: %v\n%s", err, d2.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("display did not end after its device was revoked")
	}
	for _, f := range []string{displayKeyFile, displayStateFile} {
		if _, err := os.Stat(filepath.Join(stateDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after revocation: %v, want it removed", f, err)
		}
	}
}

func TestDisplayCommandLine(t *testing.T) {
	for _, args := range [][]string{{"display"}, {"display", "--server", "ftp://x"}, {"display", "--server", "http://x", "--pin", "nocolon"}, {"display", "--server", "http://x", "extra"}} {
		if err := run(context.Background(), args, env(nil), &syncBuffer{}, &syncBuffer{}); exitCode(err) != 2 {
			t.Fatalf("run %q: %v, want a usage error", args, err)
		}
	}
	if err := run(context.Background(), []string{"display", "--help"}, env(nil), &syncBuffer{}, &syncBuffer{}); err != nil {
		t.Fatalf("display --help: %v", err)
	}
	long := compactData([]byte(`{"text": "` + strings.Repeat("é", 200) + `"}`))
	if len(long) > maxDataShown+len("…") || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, `{"text":"é`) {
		t.Fatalf("long data shown as %q", long)
	}
}

// An emergency override shows on the terminal display as one line with its text quoted
// (the server refuses control characters in it; quoting keeps a line one line whatever
// a server sends), the server counts the display's acknowledgement, and its end shows
// too.
func TestDisplayShowsAnOverride(t *testing.T) {
	addr := freeAddr(t)
	pub := "http://" + addr
	s := startServe(t, t.TempDir(), "--listen", addr, "--public-url", pub)
	code, res := s.call(t, "POST", "/api/admin/feeds/lobby/pins", s.token, `{}`)
	if code != 201 {
		t.Fatalf("issue PIN = %d %v", code, res)
	}
	d := startDisplay(t, "--server", pub, "--state-dir", t.TempDir(), "--pin", "lobby:"+res["pin"].(string))
	d.waitOut(t, regexp.MustCompile(`-- live \(seq \d+\) --`), 30*time.Second)

	code, res = s.call(t, "POST", "/api/admin/overrides", s.token,
		`{"feeds":["*"],"title":"Evacuate \"now\"","body":"Use stairwell B","level":"danger","expires_in":"10m"}`)
	if code != 201 {
		t.Fatalf("raise = %d %v", code, res)
	}
	id := res["id"].(string)
	line := d.waitOut(t, regexp.MustCompile(`!! DANGER `+regexp.QuoteMeta(id)+`: (.*)\n`), 30*time.Second)
	if want := `"Evacuate \"now\"" "Use stairwell B" (until `; !strings.HasPrefix(line[1], want) {
		t.Fatalf("override line %q, want it to start with %q", line[1], want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", s.base+"/api/admin/overrides", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var list []struct {
			ID    string `json:"id"`
			Shown int    `json:"shown"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 && len(list) == 1 && list[0].ID == id && list[0].Shown == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("overrides = %d %+v (%v), want the display's acknowledgement counted", resp.StatusCode, list, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := s.call(t, "DELETE", "/api/admin/overrides/"+id, s.token, ""); code != 204 {
		t.Fatalf("clear = %d", code)
	}
	d.waitOut(t, regexp.MustCompile(`!! ended `+regexp.QuoteMeta(id)+`\n`), 30*time.Second)
	if err := d.stop(t); err != nil {
		t.Fatalf("display after an interrupt: %v", err)
	}
}

// Changing only the port is a working set-up: serve with --listen alone, and a display
// that reaches it at http://localhost:<port> pairs and goes live. Its DPoP proofs name
// the address it uses, which the server checks against public_url; a public_url left at
// localhost:8080 refused them.
func TestOnlyTheListenPortChanged(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	pub := "http://localhost:" + port
	s := startServe(t, t.TempDir(), "--listen", addr)
	if want := "public URL:     " + pub + "\n"; !strings.Contains(s.stdout.String(), want) {
		t.Fatalf("banner: %s\nwant the line %q", s.stdout, want)
	}
	code, res := s.call(t, "POST", "/api/admin/feeds/lobby/pins", s.token, `{}`)
	if code != 201 {
		t.Fatalf("issue PIN = %d %v", code, res)
	}
	d := startDisplay(t, "--server", pub, "--state-dir", t.TempDir(), "--pin", "lobby:"+res["pin"].(string))
	d.waitOut(t, regexp.MustCompile(`-- live \(seq \d+\) --`), 30*time.Second)
	if err := d.stop(t); err != nil {
		t.Fatalf("display after an interrupt: %v", err)
	}
}
