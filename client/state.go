package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// State is what a display keeps across restarts: which device it is (the key is kept
// apart, see LoadOrCreateKey) and how far it has shown the feed, so a restarted display
// gets a catch-up of what it missed instead of a reset.
type State struct {
	DeviceID string `json:"device_id"`
	Feed     string `json:"feed"`
	// Since is the newest seq shown, Epoch the log it belongs to (docs/protocol.md §5).
	Since uint64 `json:"since"`
	Epoch string `json:"epoch,omitempty"`
}

// StateStore keeps a State. Load of a store that holds nothing yet returns the zero
// State and no error.
type StateStore interface {
	Load() (State, error)
	Save(State) error
}

// maxStateFile bounds what Load reads: a state is a few hundred bytes.
const maxStateFile = 64 << 10

// FileState is a StateStore in one JSON file, written with mode 0600 by an atomic
// rename, so a crash leaves the old state or the new one, never half of either.
type FileState struct {
	Path string
}

// Load reads the file; a missing file is the zero State.
func (f FileState) Load() (State, error) {
	var st State
	file, err := os.Open(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("client: read state: %w", err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxStateFile+1))
	if err != nil {
		return st, fmt.Errorf("client: read state: %w", err)
	}
	if len(data) > maxStateFile {
		return st, fmt.Errorf("client: state file %s is over %d bytes: not a state", f.Path, maxStateFile)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("client: state file %s is not a state: %w", f.Path, err)
	}
	return st, nil
}

// Save replaces the file.
func (f FileState) Save(st State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("client: encode state: %w", err)
	}
	tmp, err := writeTemp(f.Path, data)
	if err != nil {
		return fmt.Errorf("client: write state: %w", err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("client: write state: %w", err)
	}
	if err := syncDir(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("client: write state: %w", err)
	}
	return nil
}

// Forget removes the file, as a revoked device must (a missing file is no error).
func (f FileState) Forget() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("client: forget state: %w", err)
	}
	return nil
}

// memState is the StateStore of a Client without one: the process's memory.
type memState struct{ st State }

func (m *memState) Load() (State, error) { return m.st, nil }
func (m *memState) Save(st State) error  { m.st = st; return nil }
