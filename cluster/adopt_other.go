//go:build !linux

package cluster

import (
	"fmt"
	"os"
)

// Adoption needs pidfds and the poll loop: Linux only.

// ListenerFiles returns ErrNotSupported outside Linux.
func (p *Primary) ListenerFiles() (map[string]*os.File, error) {
	return nil, fmt.Errorf("cluster: listener files: %w", ErrNotSupported)
}

// ChannelFile returns ErrNotSupported outside Linux.
func (w *Worker) ChannelFile() (*os.File, error) {
	return nil, fmt.Errorf("cluster: channel file: %w", ErrNotSupported)
}

// AdoptListener returns ErrNotSupported outside Linux; it closes f.
func (p *Primary) AdoptListener(key string, f *os.File) error {
	if f != nil {
		f.Close()
	}
	return fmt.Errorf("cluster: adopt listener: %w", ErrNotSupported)
}

// Adopt returns ErrNotSupported outside Linux; it closes spec.Channel.
func (p *Primary) Adopt(spec AdoptSpec) (*Worker, error) {
	if spec.Channel != nil {
		spec.Channel.Close()
	}
	return nil, fmt.Errorf("cluster: adopt: %w", ErrNotSupported)
}
