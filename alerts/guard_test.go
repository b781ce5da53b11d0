package alerts

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAddrProblem(t *testing.T) {
	for _, tc := range []struct {
		ip                   string
		strict, allowPrivate bool // refused without, and with, webhook_allow_private
	}{
		{"93.184.215.14", false, false},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", false, false},
		{"127.0.0.1", true, false},
		{"127.8.9.10", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.1.2.3", true, false},
		{"172.16.0.1", true, false},
		{"192.168.1.1", true, false},
		{"fd12:3456::1", true, false},
		{"100.64.0.1", true, false},
		{"64:ff9b::10.0.0.1", true, false},
		{"169.254.169.254", true, true},
		{"::ffff:169.254.169.254", true, true},
		{"fd00:ec2::254", true, true},
		{"100.100.100.200", true, true},
		{"169.254.1.1", true, true},
		{"fe80::1", true, true},
		{"0.0.0.0", true, true},
		{"0.1.2.3", true, true},
		{"::", true, true},
		{"224.0.0.1", true, true},
		{"ff02::1", true, true},
		{"255.255.255.255", true, true},
		{"64:ff9b::169.254.169.254", true, true},
	} {
		ip := netip.MustParseAddr(tc.ip)
		if got := addrProblem(ip, false) != ""; got != tc.strict {
			t.Errorf("addrProblem(%s, false) refuses = %v, want %v", tc.ip, got, tc.strict)
		}
		if got := addrProblem(ip, true) != ""; got != tc.allowPrivate {
			t.Errorf("addrProblem(%s, true) refuses = %v, want %v", tc.ip, got, tc.allowPrivate)
		}
	}
}

func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		url          string
		allowPrivate bool
		want         string // in the message; "" for accepted
	}{
		{"http://127.0.0.1/", false, "loopback"},
		{"http://127.0.0.1/", true, ""},
		{"http://169.254.169.254/latest/meta-data", false, "metadata"},
		{"http://169.254.169.254/latest/meta-data", true, "metadata"},
		{"http://[fd00:ec2::254]/", true, "metadata"},
		{"http://[::1]:8080/x", false, "loopback"},
		{"http://10.0.0.1/", false, "private"},
		{"http://localhost:9/", false, "loopback"},
		{"http://localhost:9/", true, ""},
		{"https://93.184.215.14/hook", false, ""},
		{"ftp://93.184.215.14/", false, "http or https"},
		{"/relative", false, "http or https"},
		{"http://user:pw@93.184.215.14/", false, "user name"},
		{"http://93.184.215.14/#x", false, "fragment"},
		{"http://93.184.215.14:99999/", false, "port"},
		{"", false, "required"},
		{"http://" + strings.Repeat("a", 2100) + ".example/", false, "2048"},
		{"http://no-such-host.invalid/", true, "does not resolve"},
	} {
		_, problem := checkURL(ctx, tc.url, tc.allowPrivate)
		if (tc.want == "") != (problem == "") || !strings.Contains(problem, tc.want) {
			t.Errorf("checkURL(%.60q, %v) = %q, want %q", tc.url, tc.allowPrivate, problem, tc.want)
		}
	}
}

// TestDialRefusesLocalhost: a delivery to a name that resolves to loopback is refused
// on the address dialled, before any byte reaches the listener; the same request with
// private targets allowed reaches it, so the listener would have seen it.
func TestDialRefusesLocalhost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached.Add(1) }), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	url := "http://localhost:" + strconv.Itoa(port) + "/hook"

	strict := newHTTPClient(2*time.Second, false)
	defer strict.CloseIdleConnections()
	resp, err := strict.Post(url, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("a delivery to localhost was sent")
	}
	if !errors.Is(err, ErrRefusedAddress) {
		t.Fatalf("error %v, want ErrRefusedAddress", err)
	}
	if d := describe(err); !strings.Contains(d, "refused") || strings.Contains(d, "/hook") {
		t.Errorf("describe = %q, want a refusal without the URL", d)
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the listener got %d requests", n)
	}
	open := newHTTPClient(2*time.Second, true)
	defer open.CloseIdleConnections()
	resp, err = open.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("with private targets allowed: %v", err)
	}
	resp.Body.Close()
	if n := reached.Load(); n != 1 {
		t.Fatalf("the listener got %d requests, want 1", n)
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}
