//go:build !linux

package cluster

// acceptBacklog is not known off Linux.
func acceptBacklog(fd int) int { return 0 }
