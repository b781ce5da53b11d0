//go:build container

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// The container test (go tool -modfile=tools/go.mod task test:container, run by .ci/run) builds the image with
// the same task an operator runs and starts the real container with Podman and runc, the
// way README "Run in a container" says. It fails, never skips, when either is missing or
// the image does not run.

// containerRunFlags are what this machine needs (shared NOTES.md "Containers here"):
// crun fails on its hybrid cgroup layout and rlimits; host networking keeps everything
// on loopback, the server bound to 127.0.0.1 ports the test chose.
var containerRunFlags = []string{"--network", "host", "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"}

// podman runs one podman command (with --runtime runc) and returns its stdout; a
// failure carries its stderr.
func podman(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--runtime", "runc"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := podman(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireContainerTools fails the test, with what to do, when podman or runc is missing.
func requireContainerTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing, so the container image cannot be built and run here: install Debian's podman and runc (apt-get install -y podman runc), or run 'go tool -modfile=tools/go.mod task test:container', which installs them", tool)
		}
	}
}

// buildImage builds the image through the Taskfile's image task, as an operator would:
// with the go-task that runs test:container (KIOSKFEED_TASK, its TASK_EXE), else with
// the pinned one, `go tool -modfile=tools/go.mod task`.
func buildImage(t *testing.T, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name, args := "go", []string{"tool", "-modfile=tools/go.mod", "task"}
	if exe := os.Getenv("KIOSKFEED_TASK"); exe != "" {
		name, args = exe, nil
	}
	cmd := exec.CommandContext(ctx, name, append(args, "image", "TAG="+tag)...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s image TAG=%s: %v\n%s", name, strings.Join(args, " "), tag, err, out)
	}
}

// TestContainer: the image built by `go tool -modfile=tools/go.mod task image` runs as its non-root user with
// its data in a fresh volume it may write; its HEALTHCHECK (kioskfeed healthcheck, run by
// podman healthcheck run) turns healthy; the first admin token it prints in its log pairs
// a tablet by PIN through the public client; an event published with a producer key
// reaches that tablet over /ws; and after a restart of the container the tablet connects
// again with what the volume kept (its device record and the signing keys), and no new
// admin token is made.
func TestContainer(t *testing.T) {
	requireContainerTools(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	id := hex.EncodeToString(suffix)
	image := "localhost/kioskfeed:container-test-" + id
	name, volume := "kioskfeed-test-"+id, "kioskfeed-test-data-"+id
	buildImage(t, image)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := podman(ctx, "logs", name)
			t.Logf("container log:\n%s", logs)
		}
		for _, args := range [][]string{{"rm", "-f", "-t", "5", name}, {"volume", "rm", "-f", volume}, {"rmi", "-f", image}} {
			if _, err := podman(ctx, args...); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})

	// The image: its labels, its user, its version.
	labels := mustPodman(t, "image", "inspect", "--format", `{{.Config.User}}|{{index .Config.Labels "org.opencontainers.image.title"}}|{{index .Config.Labels "org.opencontainers.image.version"}}|{{.Config.Healthcheck.Test}}`, image)
	parts := strings.Split(strings.TrimSpace(labels), "|")
	if len(parts) != 4 || parts[0] != "65532:65532" || parts[1] != "kioskfeed" || parts[2] == "" || !strings.Contains(parts[3], "/kioskfeed healthcheck") {
		t.Fatalf("image %s: user|title|version|healthcheck = %q; want 65532:65532, kioskfeed, a version, /kioskfeed healthcheck", image, labels)
	}
	if v := mustPodman(t, append(append([]string{"run", "--rm"}, containerRunFlags...), image, "version")...); !strings.HasPrefix(v, "kioskfeed "+parts[2]) {
		t.Fatalf("kioskfeed version in the image says %q; want it to start with the label's version %q", v, parts[2])
	}

	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	base := "http://" + httpAddr
	mustPodman(t, append(append([]string{"run", "-d", "--name", name}, containerRunFlags...),
		"-v", volume+":/data",
		"-e", "KIOSKFEED_LISTEN="+httpAddr,
		"-e", "KIOSKFEED_NATS_LISTEN="+natsAddr,
		"-e", "KIOSKFEED_PUBLIC_URL="+base,
		image)...)
	waitHealthy(t, name)

	logs := mustPodman(t, "logs", name)
	m := regexp.MustCompile(`admin token:\s+(kfa_\S+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("the container printed no new admin token in its log:\n%s", logs)
	}
	admin := m[1]
	if !strings.Contains(logs, "data dir:       /data") || !strings.Contains(logs, "nats://"+natsAddr) {
		t.Fatalf("the container's banner does not name /data and the NATS producer listener %s:\n%s", natsAddr, logs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var pin struct{ PIN string }
	apiCall(t, "POST", base+"/api/admin/feeds/lobby/pins", admin, `{"ttl":"5m"}`, http.StatusCreated, &pin)
	var producer struct{ Key string }
	apiCall(t, "POST", base+"/api/admin/producer-keys", admin, `{"name":"container test","feeds":["lobby"]}`, http.StatusCreated, &producer)

	key, err := client.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dev := client.NewDevice(base, key)
	if err := dev.PairWithPIN(ctx, "lobby", pin.PIN, "container test"); err != nil {
		t.Fatalf("pair with a PIN through the container: %v", err)
	}
	receive(t, ctx, dev, base, producer.Key, `{"text":"from inside a container"}`)

	// The volume keeps the instance: devices, signing keys, the admin token's hash.
	mustPodman(t, "restart", "-t", "10", name)
	waitHealthy(t, name)
	if both := mustPodman(t, "logs", name); strings.Count(both, "kfa_") != 1 {
		t.Fatalf("the restarted container made another admin token (the volume lost its hash); both runs' log:\n%s", both)
	}
	var devices []struct {
		ID string `json:"device_id"`
	}
	apiCall(t, "GET", base+"/api/admin/devices", admin, "", http.StatusOK, &devices) // the first token still works
	if len(devices) != 1 || devices[0].ID != dev.Credentials().DeviceID {
		t.Fatalf("after the restart the instance lists devices %+v; want the one paired, %s", devices, dev.Credentials().DeviceID)
	}
	dev.SetCredentials(client.Credentials{DeviceID: dev.Credentials().DeviceID, Feed: "lobby"}) // a new token, from the kept keys
	receive(t, ctx, dev, base, producer.Key, `{"text":"after a restart"}`)
}

// waitHealthy polls the image's own HEALTHCHECK until it passes, failing early with the
// log if the container stopped.
func waitHealthy(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, last = podman(ctx, "healthcheck", "run", name)
		state, _ := podman(ctx, "inspect", "--format", "{{.State.Status}}", name)
		cancel()
		if last == nil {
			return
		}
		if s := strings.TrimSpace(state); s != "running" && s != "" {
			logs := mustPodman(t, "logs", name)
			t.Fatalf("the container is %s, not running: %v\nlog:\n%s", s, last, logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the container's HEALTHCHECK did not pass within 90s: %v", last)
}

// receive connects dev, publishes one item with the producer key once the catch-up is
// in, and waits for it on the socket.
func receive(t *testing.T, ctx context.Context, dev *client.Device, base, producerKey, data string) {
	t.Helper()
	conn, err := client.Connect(ctx, dev, client.Resume{}, client.SocketOptions{})
	if err != nil {
		t.Fatalf("connect to the container's /ws: %v", err)
	}
	defer conn.Close()
	stop := time.AfterFunc(time.Minute, func() { conn.Close() }) // bounds every Next below
	defer stop.Stop()
	var sent string
	for n := 0; n < 1000; n++ {
		m, err := conn.Next()
		if err != nil {
			t.Fatalf("socket ended before the event %s arrived: %v", data, err)
		}
		switch {
		case m.Type == client.TypeSynced && sent == "":
			var res struct{ ID string }
			apiCall(t, "POST", base+"/api/feeds/lobby/events", producerKey, `{"kind":"item","data":`+data+`}`, http.StatusAccepted, &res)
			sent = res.ID
		case m.Type == client.TypeEvent && sent != "" && jsonEqual(m.Data, data):
			if m.Kind != "item" || m.ID != sent {
				t.Fatalf("the tablet got %s %s with id %q; want the item published, id %q", m.Kind, m.Data, m.ID, sent)
			}
			return
		}
	}
	t.Fatalf("1000 messages and no event %s", data)
}

func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

// apiCall makes one bearer-authenticated JSON call and decodes the answer into out.
func apiCall(t *testing.T, method, url, bearer, body string, want int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d %s; want %d", method, url, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, raw)
		}
	}
}
