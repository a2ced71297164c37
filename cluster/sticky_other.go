//go:build !linux

package cluster

func accept4Client(lfd int) (int, uint64, error) { return -1, 0, ErrNotSupported }
