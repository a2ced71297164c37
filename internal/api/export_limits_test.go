package api

import "time"

// SetLimitsForTest shortens the control socket's timeouts and connection limit (for the next
// Serve) and returns their restore.
func SetLimitsForTest(read, idle time.Duration, conns int) (restore func()) {
	rh, r, i, c := readHeaderTimeout, readTimeout, idleTimeout, connLimit
	readHeaderTimeout, readTimeout, idleTimeout = read, read, idle
	connLimit = func() int { return conns }
	return func() { readHeaderTimeout, readTimeout, idleTimeout, connLimit = rh, r, i, c }
}

// TrustNoPeerForTest makes clients take every listener for another user's, and returns its restore.
func TrustNoPeerForTest() (restore func()) {
	tp := trustedPeer
	trustedPeer = func(int) bool { return false }
	return func() { trustedPeer = tp }
}
