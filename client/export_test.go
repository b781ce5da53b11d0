package client

// SetFrameCheck makes check see every text message a Conn reads from (toServer false)
// or writes to (toServer true) remote, the server's address, for the tests' schema
// checks (main_test.go). It is set once, before the tests run.
func SetFrameCheck(check func(remote string, toServer bool, payload []byte) error) {
	frameCheck = func(c *Conn, toServer bool, payload []byte) error {
		return check(c.nc.RemoteAddr().String(), toServer, payload)
	}
}
