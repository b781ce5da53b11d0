//go:build !linux

package bridge

import (
	"errors"
	"net"
)

// poller is Linux's epoll (poller_linux.go). Elsewhere every socket has a reader
// goroutine of its own, as the session falls back to when add fails.
type poller struct{}

type pollHandle struct{ fd int }

var errNotPollable = errors.New("socket polling is only implemented on Linux")

func newPoller() (*poller, error)                          { return nil, errNotPollable }
func (p *poller) add(net.Conn, func()) (pollHandle, error) { return pollHandle{}, errNotPollable }
func (p *poller) arm(pollHandle) error                     { return errNotPollable }
func (p *poller) rearm(pollHandle) error                   { return errNotPollable }
func (p *poller) remove(pollHandle)                        {}
func (p *poller) close()                                   {}

func takePingPong(int) ([]byte, bool)   { return nil, false }
func takeInput(int) []byte              { return nil }
func writeNow(int, []byte) (int, error) { return 0, errNotPollable }
