package cluster

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/ipc"
)

// Errors of the package, for errors.Is. Errors returned by the package wrap them with context.
var (
	// ErrPrimaryClosed is returned by Fork once the Primary's Close or Shutdown has begun.
	ErrPrimaryClosed = errors.New("cluster: primary is closed")
	// ErrNotConnected is returned when a worker's IPC channel is closed: Worker.Send and
	// Worker.Disconnect on the primary's side, Send in a process whose channel has closed.
	ErrNotConnected = errors.New("cluster: IPC channel is not connected")
	// ErrDisconnecting is returned by Listen and ListenPacket in a worker that the primary has asked to
	// disconnect (before or while it asked for the socket): the worker should stop, not serve. ServeHTTP
	// returns nil in that case.
	ErrDisconnecting = errors.New("cluster: worker is disconnecting")
	// ErrNoChannel is returned by Send and Ready in a process that has no IPC channel to a parent.
	ErrNoChannel = errors.New("cluster: no IPC channel to a parent process (NODE_CHANNEL_FD not set)")
	// ErrNotSupported is returned on systems other than Linux by everything that needs an IPC channel
	// (forking a worker, Listen in a worker). Outside a cluster, Listen and ListenPacket work anywhere.
	ErrNotSupported = ipc.ErrNotSupported
)

// Policy is the scheduling policy of a Primary, Node's cluster.schedulingPolicy.
type Policy int

const (
	// PolicyDefault takes the policy from NODE_CLUSTER_SCHED_POLICY ("rr" or "none"), else
	// PolicyRoundRobin.
	PolicyDefault Policy = iota
	// PolicyRoundRobin: the primary accepts connections and hands them to workers in turn (Node's
	// cluster.SCHED_RR).
	PolicyRoundRobin
	// PolicyNone: the listening socket is shared with the workers and the kernel picks who accepts
	// (Node's cluster.SCHED_NONE).
	PolicyNone
)

// Old names of the policies.
const (
	// Deprecated: use PolicyRoundRobin.
	RoundRobin = PolicyRoundRobin
	// Deprecated: use PolicyNone.
	None = PolicyNone
)

// String returns "rr", "none" or "default", the names NODE_CLUSTER_SCHED_POLICY uses.
func (p Policy) String() string {
	switch p {
	case PolicyRoundRobin:
		return "rr"
	case PolicyNone:
		return "none"
	}
	return "default"
}

func (p Policy) resolve() Policy {
	if p != PolicyDefault {
		return p
	}
	if strings.EqualFold(os.Getenv("NODE_CLUSTER_SCHED_POLICY"), "none") {
		return PolicyNone
	}
	return PolicyRoundRobin
}

// AddressType is the kind of address a worker listens on, as Node reports it: 4, 6, -1 (a Unix socket
// path), "udp4" or "udp6".
type AddressType struct {
	n   int    // 4, 6, -1 when s is empty
	udp string // "udp4" or "udp6"
}

// The address types Node uses.
var (
	TCP4 = AddressType{n: 4}
	TCP6 = AddressType{n: 6}
	Unix = AddressType{n: -1}
	UDP4 = AddressType{udp: "udp4"}
	UDP6 = AddressType{udp: "udp6"}
)

// String returns "4", "6", "-1", "udp4" or "udp6".
func (t AddressType) String() string {
	if t.udp != "" {
		return t.udp
	}
	return strconv.Itoa(t.n)
}

// IsUDP reports whether t is "udp4" or "udp6".
func (t AddressType) IsUDP() bool { return t.udp != "" }

// MarshalJSON encodes t as Node does: a number, or a string for UDP.
func (t AddressType) MarshalJSON() ([]byte, error) {
	if t.udp != "" {
		return json.Marshal(t.udp)
	}
	return json.Marshal(t.n)
}

// UnmarshalJSON decodes a number or "udp4"/"udp6".
func (t *AddressType) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s != "udp4" && s != "udp6" {
			return errors.New("cluster: unknown address type " + s)
		}
		*t = AddressType{udp: s}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*t = AddressType{n: n}
	return nil
}

// Address is where a worker is listening: the argument of Node's 'listening' event.
type Address struct {
	Address     string      // IP address or socket path; empty when the worker gave no host
	Port        int         // -1 for a Unix socket path
	AddressType AddressType // 4, 6, -1, "udp4", "udp6"
}

// String returns host:port, [ipv6]:port, or the socket path.
func (a Address) String() string {
	if a.AddressType == Unix {
		return a.Address
	}
	if strings.Contains(a.Address, ":") {
		return "[" + a.Address + "]:" + strconv.Itoa(a.Port)
	}
	return a.Address + ":" + strconv.Itoa(a.Port)
}

// IsPrimary reports whether this process is a primary: true unless it was started as a worker
// (NODE_UNIQUE_ID set in its environment at start), exactly as in Node.
func IsPrimary() bool { return !IsWorker() }

// IsWorker reports whether this process was started as a cluster worker.
func IsWorker() bool { return self.id > 0 }
