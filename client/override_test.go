package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// An override raised for the feed reaches Run's handler with its text (live, after
// synced), Run acknowledges it (the admin API counts the screen as showing it), and
// clearing it gives the handler an override_clear with the same id.
func TestRunShowsAndAcknowledgesAnOverride(t *testing.T) {
	s := shared
	const feed = "override-feed"
	d := pairedDevice(t, s, feed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	rec := runRecording(t, ctx, &client.Client{Device: d, ShownEvery: 50 * time.Millisecond})

	var raised struct {
		ID string `json:"id"`
	}
	if err := s.admin("POST", "/api/admin/overrides", `{"feeds":["`+feed+`"],"title":"Evacuate","body":"Use stairwell B","level":"danger","expires_in":"10m"}`, 201, &raised); err != nil {
		t.Fatalf("raise: %v", err)
	}
	find := func(typ string) (client.Message, bool) {
		for _, m := range rec.all() {
			if m.Type == typ && m.ID == raised.ID {
				return m, true
			}
		}
		return client.Message{}, false
	}
	var m client.Message
	deadline := time.Now().Add(wait)
	for ok := false; !ok; m, ok = find(client.TypeOverride) {
		if time.Now().After(deadline) {
			t.Fatalf("no override %s in %v", raised.ID, rec.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o := m.Override; o == nil || o.Title != "Evacuate" || o.Body != "Use stairwell B" || o.Level != "danger" ||
		len(o.Feeds) != 1 || o.Feeds[0] != feed || !o.ExpiresAt.After(o.CreatedAt) {
		t.Fatalf("override = %+v", m.Override)
	}

	// The acknowledgement: the admin API counts this screen as showing it.
	for {
		var list []struct {
			ID    string `json:"id"`
			Shown int    `json:"shown"`
		}
		if err := s.admin("GET", "/api/admin/overrides", "", 200, &list); err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].ID == raised.ID && list[0].Shown == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("overrides = %+v, want %s shown by 1", list, raised.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := s.admin("DELETE", "/api/admin/overrides/"+raised.ID, "", 204, nil); err != nil {
		t.Fatalf("clear: %v", err)
	}
	for _, ok := find(client.TypeOverrideClear); !ok; _, ok = find(client.TypeOverrideClear) {
		if time.Now().After(deadline) {
			t.Fatalf("no override_clear for %s in %v", raised.ID, rec.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
