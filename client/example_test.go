package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// The examples run against a real kioskfeed server that the tests start (shared); an
// administrator's part (minting a PIN, approving a code, publishing) is played by the
// test harness.

// A display pairs with a PIN an administrator gave it.
func ExampleDevice_PairWithPIN() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pin, _ := shared.pin("lobby") // the administrator: POST /api/admin/feeds/lobby/pins

	key, err := client.NewKey()
	if err != nil {
		log.Fatal(err)
	}
	dev := client.NewDevice(shared.URL, key)
	if err := dev.PairWithPIN(ctx, "lobby", pin, "Lobby left"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("paired with feed", dev.Credentials().Feed)
	// Output: paired with feed lobby
}

// A display with nothing typed on it shows a code that an administrator approves.
func ExampleDevice_RequestPairing() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, err := client.NewKey()
	if err != nil {
		log.Fatal(err)
	}
	dev := client.NewDevice(shared.URL, key)
	req, err := dev.RequestPairing(ctx, "Floor 2 wallboard")
	if err != nil {
		log.Fatal(err)
	}
	// Show req.UserCode and req.VerificationURIComplete (a QR code of it) to the
	// administrator. Here the test harness approves it.
	if err := shared.approve(req.UserCode, "floor-2"); err != nil {
		log.Fatal(err)
	}
	err = dev.WaitApproved(ctx, req) // polls every req.Interval seconds
	switch {
	case errors.Is(err, client.ErrPairingDenied), errors.Is(err, client.ErrPairingExpired):
		fmt.Println("ask for a new code")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("approved for feed", dev.Credentials().Feed)
	}
	// Output: approved for feed floor-2
}

// One socket: the catch-up (here a reset and the feed's state), then live events.
func ExampleConnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev := examplePaired("menu")
	_, _ = shared.publish("menu", "state", `{"title":"Today"}`)

	conn, err := client.Connect(ctx, dev, client.Resume{}, client.SocketOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for {
		m, err := conn.Next()
		if err != nil {
			log.Fatal(err)
		}
		switch m.Type {
		case client.TypeReset:
			fmt.Println("reset")
		case client.TypeEvent:
			fmt.Println(m.Kind, string(m.Data))
		case client.TypeSynced:
			fmt.Println("synced")
			_, _ = shared.publish("menu", "item", `{"dish":"soup"}`)
			continue
		}
		if m.Kind == "item" {
			return
		}
	}
	// Output:
	// reset
	// state {"title":"Today"}
	// synced
	// item {"dish":"soup"}
}

// Run keeps the display connected and remembers in a file how far it has shown the
// feed, so a restarted display catches up instead of starting over.
func ExampleClient_Run() {
	dev := examplePaired("departures")
	dir, _ := os.MkdirTemp("", "display-")
	defer os.RemoveAll(dir)
	_, _ = shared.publish("departures", "item", `{"train":"ICE 578"}`)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &client.Client{Device: dev, State: client.FileState{Path: filepath.Join(dir, "state.json")}}
	err := c.Run(ctx, func(m client.Message) error {
		switch m.Type {
		case client.TypeReset:
			fmt.Println("clear the screen")
		case client.TypeEvent:
			fmt.Println("show", string(m.Data))
		case client.TypeSynced:
			cancel() // a real display runs until it is stopped
		}
		return nil
	})
	if errors.Is(err, client.ErrRevoked) {
		fmt.Println("forget the device and pair again")
	}
	// Output:
	// clear the screen
	// show {"train":"ICE 578"}
}

// examplePaired is a device paired with feed, for the examples.
func examplePaired(feed string) *client.Device {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pin, err := shared.pin(feed)
	if err != nil {
		log.Fatal(err)
	}
	key, err := client.NewKey()
	if err != nil {
		log.Fatal(err)
	}
	dev := client.NewDevice(shared.URL, key)
	if err := dev.PairWithPIN(ctx, feed, pin, ""); err != nil {
		log.Fatal(err)
	}
	return dev
}
