//go:build linux

package bridge

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTakeInput: one read of what the socket holds (at most maxTakeInput bytes, the rest
// left in the socket), nil when it holds nothing or the peer has closed.
func TestTakeInput(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	if b := takeInput(fds[1]); b != nil {
		t.Fatalf("empty socket: took % x, want nil", b)
	}
	sent := bytes.Repeat([]byte("0123456789"), 30) // 300 bytes
	if _, err := unix.Write(fds[0], sent); err != nil {
		t.Fatal(err)
	}
	b := takeInput(fds[1])
	if !bytes.Equal(b, sent[:maxTakeInput]) {
		t.Fatalf("took %d bytes %q, want the first %d", len(b), b, maxTakeInput)
	}
	if b := takeInput(fds[1]); !bytes.Equal(b, sent[maxTakeInput:]) {
		t.Fatalf("then took %q, want the rest %q", b, sent[maxTakeInput:])
	}
	unix.Close(fds[0])
	if b := takeInput(fds[1]); b != nil {
		t.Fatalf("after the peer closed: took % x, want nil", b)
	}
}
