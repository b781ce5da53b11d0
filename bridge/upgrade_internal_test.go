package bridge

import "testing"

// The 101 carries RFC 6455's accept value for the key (its §1.3 example) and the frame
// follows the blank line, in the one buffer written.
func TestUpgradeResponse(t *testing.T) {
	got := string(upgradeResponse("dGhlIHNhbXBsZSBub25jZQ==", []byte("FRAME")))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nFRAME"
	if got != want {
		t.Fatalf("upgradeResponse =\n%q\nwant\n%q", got, want)
	}
}
