package bridge

// This file owns proof of display (docs/protocol.md §5, #ws-shown): the tablet's
// {"type":"shown","seq":N} and {"type":"shown","override":"<id>"}, the per-socket check
// that N was sent on the socket, each device's newest record {seq, at} in memory, and
// its persistence at O(instances): a KV bucket with a few keys per instance, written
// at most every Shown.FlushEvery and only when something changed, never once per ack.
// What the admin side asks of it (a device's state, lag) is in shownview.go.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// BucketShown holds what tablets have shown: for each instance, shownChunks keys
// "<instance>.<n>", each a JSON object of the device records the instance holds (a device
// is in chunk fnv32a(id) mod shownChunks). File storage: it outlives the processes.
const BucketShown = "kioskfeed_shown"

const (
	// shownChunks is how many keys one instance writes at most: a flush writes only the
	// chunks that changed, so acks from every tablet cost at most this many writes per
	// Shown.FlushEvery and instance.
	shownChunks = 16
	// shownChunkMax bounds one chunk's value. At about 60 bytes a record that is some
	// 4,000 devices per chunk, 70,000 per instance; past that a chunk keeps its newest
	// records only (the rest stay in memory, not persisted).
	shownChunkMax = 256 << 10
	// shownKeep is how long records live: a device not heard from (no shown) for this
	// long is forgotten by the instance that held it, and the bucket drops keys not
	// written for this long (an instance that is gone); a live instance rewrites its
	// chunks every shownRewrite so they stay.
	shownKeep    = 7 * 24 * time.Hour
	shownRewrite = 24 * time.Hour
	// maxOverrideID bounds an override id in a shown.
	maxOverrideID = 64
)

// ShownConfig configures proof of display (Config.Shown). Zero fields get the defaults
// their comments give.
type ShownConfig struct {
	// FlushEvery is how often, at most, the instance writes the shown records that
	// changed to BucketShown. Default 2s.
	FlushEvery time.Duration
	// BehindEvents: a device whose lag is more than this is behind. Default 5.
	BehindEvents int
	// BehindAfter: a device whose oldest event not shown was stored longer ago than this
	// is behind; one connected this long without any shown is stale. Default 2m.
	BehindAfter time.Duration
	// OnOverride is called when a tablet acknowledges an override (its device id and the
	// override's id), on the tablet's reader goroutine: it must not block. nil: ignored.
	OnOverride func(deviceID, overrideID string)
}

func (c *ShownConfig) setDefaults() {
	if c.FlushEvery <= 0 {
		c.FlushEvery = 2 * time.Second
	}
	if c.BehindEvents <= 0 {
		c.BehindEvents = 5
	}
	if c.BehindAfter <= 0 {
		c.BehindAfter = 2 * time.Minute
	}
}

// shownRecord is one device's newest shown: the seq and when it arrived (cluster clock).
type shownRecord struct {
	Seq uint64 `json:"s"`
	At  int64  `json:"t"` // unix milliseconds
}

func (r shownRecord) time() time.Time {
	if r.At == 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.At).UTC()
}

// shownChunk is the value of one key of BucketShown.
type shownChunk struct {
	Instance string                 `json:"i"`
	Devices  map[string]shownRecord `json:"d"`
}

// shownState is a session's part of proof of display (under s.mu): synced is the seq
// the socket's synced message named, when more than lastSent (a JetStream catch-up that
// ends on the hub's head).
type shownState struct {
	synced uint64
}

// shownStore is the instance's records and its view of the others'.
type shownStore struct {
	br       *Bridge
	kv       jetstream.KeyValue
	mirror   *broker.Mirror[shownChunk]
	instance string
	prefix   string // this instance's keys: "<instance>."

	mu        sync.Mutex
	mine      map[string]shownRecord // devices acked on this instance, newest each
	dirty     [shownChunks]bool
	rewritten time.Time // when every chunk was last written
	others    map[string]shownRecord
	othersAt  time.Time
	writes    int // KV writes made (tests)
}

func newShownStore(ctx context.Context, br *Bridge) (*shownStore, error) {
	kv, err := br.b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketShown, Description: "what each device has shown, per instance", History: 1, TTL: shownKeep})
	if err != nil {
		return nil, err
	}
	// The mirror leaves this instance's own chunks out, undecoded: st.mine is newer, and
	// with 10,000 tablets acking, decoding its own flushes back (up to shownChunks values
	// of 40 KB every FlushEvery) took 3.7 % of the server's CPU in a 2,500-tablet ack run.
	prefix := br.leases.instance + "."
	m, err := broker.NewMirrorSkipping[shownChunk](kv, br.log, func(key string) bool { return strings.HasPrefix(key, prefix) })
	if err != nil {
		return nil, err
	}
	return &shownStore{br: br, kv: kv, mirror: m, instance: br.leases.instance, prefix: prefix, mine: map[string]shownRecord{}, rewritten: br.cfg.Now()}, nil
}

func shownChunkOf(device string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(device))
	return int(h.Sum32() % shownChunks)
}

// onShown handles a shown from an authenticated socket: O(1), one map store; the
// persistence is the flush loop's. A shown before the welcome is ignored by message,
// as any message but auth is before it.
func (s *session) onShown(m clientMsg) {
	seq, override, ok := parseShown(m.Seq, m.Override)
	if !ok {
		s.closeWith(reasonMalformed)
		return
	}
	if override != "" {
		s.br.onOverrideShown(s.device, override)
		return
	}
	s.shownSeq(seq)
}

// plainShown reads the shown every client sends, {"type":"shown","seq":N} exactly as
// JSON.stringify and client.Conn.Shown write it, without a JSON decode (a fifth of a
// shown's cost at thousands a second); any other spelling goes through onShown.
func plainShown(p []byte) (uint64, bool) {
	const prefix = `{"type":"shown","seq":`
	if len(p) < len(prefix)+2 || len(p) > len(prefix)+21 || string(p[:len(prefix)]) != prefix || p[len(p)-1] != '}' {
		return 0, false
	}
	seq, _, ok := parseShown(p[len(prefix):len(p)-1], nil)
	return seq, ok
}

// isPlainShown reports whether a masked text frame's payload (at most 125 bytes) is a
// shown plainShown reads, leaving it as it is: the poller's goroutine takes such a frame
// (takeSmall) and the reader unmasks and reads it as any other.
func isPlainShown(mask, masked []byte) bool {
	var p [125]byte
	if len(mask) != 4 || len(masked) > len(p) {
		return false
	}
	n := copy(p[:], masked)
	for i := range n {
		p[i] ^= mask[i&3]
	}
	_, ok := plainShown(p[:n])
	return ok
}

// shownSeq records a well-formed shown of seq, or closes 4400 if seq was not sent.
func (s *session) shownSeq(seq uint64) {
	s.mu.Lock()
	limit := max(s.lastSent, s.shown.synced)
	h := s.hub
	s.mu.Unlock()
	if seq > limit {
		// A tablet cannot claim what it was never sent on this socket.
		s.closeWith(reasonMalformed)
		return
	}
	now := s.br.cfg.Now()
	if s.br.shown.record(s.device, seq, now) && h != nil {
		if t, ok := h.eventTime(seq); ok {
			s.br.metrics.shownLatency.Observe(max(now.Sub(t), 0).Seconds())
		}
	}
}

// parseShown reads a shown's fields: exactly one of seq (a positive integer in plain
// digits) and override (an id of 1 to maxOverrideID letters, digits, '-', '_', '.').
func parseShown(seqRaw, overrideRaw json.RawMessage) (seq uint64, override string, ok bool) {
	switch {
	case len(seqRaw) > 0 && len(overrideRaw) > 0, len(seqRaw) == 0 && len(overrideRaw) == 0:
		return 0, "", false
	case len(overrideRaw) > 0:
		if json.Unmarshal(overrideRaw, &override) != nil || !validOverrideID(override) {
			return 0, "", false
		}
		return 0, override, true
	}
	if len(seqRaw) > 20 || seqRaw[0] < '1' || seqRaw[0] > '9' || bytes.ContainsFunc(seqRaw, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, "", false
	}
	n, err := strconv.ParseUint(string(seqRaw), 10, 64)
	return n, "", err == nil
}

func validOverrideID(id string) bool {
	if id == "" || len(id) > maxOverrideID {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// onOverrideShown passes a tablet's acknowledgement of an override to the hook
// (Config.Shown.OnOverride, or what the overrides code sets in br.overrideShown); none:
// ignored. It runs on the tablet's reader goroutine and must not block.
func (br *Bridge) onOverrideShown(deviceID, overrideID string) {
	if f := br.overrideShown; f != nil {
		f(deviceID, overrideID)
	}
}

// record notes a device's shown; it reports whether it was news (a seq other than the
// device's newest).
func (st *shownStore) record(device string, seq uint64, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	old, had := st.mine[device]
	st.mine[device] = shownRecord{Seq: seq, At: now.UnixMilli()}
	st.dirty[shownChunkOf(device)] = true
	return !had || old.Seq != seq
}

// forget drops a device's record (revoked).
func (st *shownStore) forget(device string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.mine[device]; ok {
		delete(st.mine, device)
		st.dirty[shownChunkOf(device)] = true
	}
}

// get is a device's newest record across the cluster: this instance's, or the newest
// of the other instances' keys (their view is at most Shown.FlushEvery old, and rebuilt
// from the mirror at most once a second).
func (st *shownStore) get(device string) (shownRecord, bool) {
	now := st.br.cfg.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.others == nil || now.Sub(st.othersAt) >= time.Second || now.Before(st.othersAt) {
		st.others = map[string]shownRecord{}
		for _, c := range st.mirror.All(func(c shownChunk) bool { return c.Instance != st.instance }) { // ours: st.mine is newer
			for d, r := range c.Devices {
				if o, ok := st.others[d]; !ok || r.At > o.At {
					st.others[d] = r
				}
			}
		}
		st.othersAt = now
	}
	r, ok := st.mine[device]
	if o, ook := st.others[device]; ook && (!ok || o.At > r.At) {
		return o, true
	}
	return r, ok
}

// flushLoop writes the changed chunks every Shown.FlushEvery, and once more as the
// bridge shuts down.
func (st *shownStore) flushLoop() {
	t := time.NewTicker(st.br.cfg.Shown.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-st.br.stop:
			st.flush()
			return
		case <-t.C:
			st.flush()
		}
	}
}

// flush writes the chunks that changed since the last flush (all of them once every
// shownRewrite, so that the bucket's TTL keeps a live instance's keys), forgetting
// records older than shownKeep. A failed write leaves the chunk dirty for the next one.
func (st *shownStore) flush() {
	now := st.br.cfg.Now()
	type job struct {
		n   int
		val []byte
	}
	var jobs []job
	st.mu.Lock()
	if now.Sub(st.rewritten) >= shownRewrite {
		st.rewritten = now
		for i := range st.dirty {
			st.dirty[i] = true
		}
	}
	var chunks [shownChunks]map[string]shownRecord
	cut := now.Add(-shownKeep).UnixMilli()
	for d, r := range st.mine {
		if r.At < cut {
			delete(st.mine, d)
			st.dirty[shownChunkOf(d)] = true
			continue
		}
		if n := shownChunkOf(d); st.dirty[n] {
			if chunks[n] == nil {
				chunks[n] = map[string]shownRecord{}
			}
			chunks[n][d] = r
		}
	}
	for n, dirty := range st.dirty {
		if dirty {
			jobs = append(jobs, job{n: n, val: encodeChunk(st.instance, chunks[n], st.br.log)})
			st.dirty[n] = false
		}
	}
	st.mu.Unlock()
	for _, j := range jobs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := st.kv.Put(ctx, st.prefix+strconv.Itoa(j.n), j.val)
		cancel()
		st.mu.Lock()
		if err != nil {
			st.dirty[j.n] = true
		} else {
			st.writes++
		}
		st.mu.Unlock()
		if err != nil {
			st.br.log.Warn("shown records not persisted", slog.String("error", err.Error()))
		}
	}
}

// encodeChunk is a chunk's value, at most shownChunkMax bytes: past it the oldest
// records are left out (they stay in memory).
func encodeChunk(instance string, devs map[string]shownRecord, log *slog.Logger) []byte {
	if devs == nil {
		devs = map[string]shownRecord{}
	}
	val, _ := json.Marshal(shownChunk{Instance: instance, Devices: devs})
	if len(val) <= shownChunkMax {
		return val
	}
	ids := make([]string, 0, len(devs))
	for d := range devs {
		ids = append(ids, d)
	}
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(devs[b].At, devs[a].At) }) // newest first
	keep := len(ids) * shownChunkMax / len(val)
	for ; keep > 0; keep = keep * 9 / 10 {
		part := make(map[string]shownRecord, keep)
		for _, d := range ids[:keep] {
			part[d] = devs[d]
		}
		if val, _ = json.Marshal(shownChunk{Instance: instance, Devices: part}); len(val) <= shownChunkMax {
			break
		}
	}
	log.Warn("shown records of a chunk left out of the bucket: too many devices on one instance", slog.Int("devices", len(ids)), slog.Int("kept", keep))
	return val
}

// shownWrites is how many KV writes the store made (tests).
func (st *shownStore) shownWrites() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writes
}
