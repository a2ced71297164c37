// Package cluster is Node.js's cluster module for Go: a primary process forks workers, exchanges
// messages with them, and accepts every new connection on a shared port itself, handing each one to the
// next worker round-robin over a Unix socket.
//
// It speaks Node's own wire protocol (NODE_UNIQUE_ID, NODE_CHANNEL_FD, JSON lines, NODE_HANDLE with
// SCM_RIGHTS and NODE_HANDLE_ACK), so a Go primary runs unmodified Node.js workers — a plain
// `http.createServer().listen(3000)` — and a Node primary runs Go workers.
//
// A program is a primary unless it was started as a worker (NODE_UNIQUE_ID is set), exactly as in Node:
//
//	if cluster.IsPrimary() {
//		for i := 0; i < runtime.NumCPU(); i++ {
//			cluster.Fork(nil) // re-executes this program as a worker
//		}
//		cluster.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { cluster.Fork(nil) })
//		select {}
//	}
//	ln, _ := cluster.Listen("tcp", ":8080") // the primary owns the port; connections arrive here
//	http.Serve(ln, handler)
//
// Scheduling: with RoundRobin (the default, as in Node on Linux) the primary listens and passes each
// accepted connection to one worker, never more than one un-acknowledged hand-off per worker, so a
// busy or dying worker never loses a connection: it waits for the next free worker. With None the
// listening socket itself is passed to every worker and the kernel balances. UDP sockets are always
// shared.
//
// Outside a cluster, Listen simply listens, so a program runs unchanged on its own.
package cluster

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
)

// Policy is the scheduling policy of a Primary, Node's cluster.schedulingPolicy.
type Policy int

const (
	// PolicyDefault takes the policy from NODE_CLUSTER_SCHED_POLICY ("rr" or "none"), else RoundRobin.
	PolicyDefault Policy = iota
	// RoundRobin: the primary accepts connections and hands them to workers in turn.
	RoundRobin
	// None: the listening socket is shared with the workers and the kernel picks who accepts.
	None
)

// String returns "rr", "none" or "default", the names NODE_CLUSTER_SCHED_POLICY uses.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "rr"
	case None:
		return "none"
	}
	return "default"
}

func (p Policy) resolve() Policy {
	if p != PolicyDefault {
		return p
	}
	if strings.EqualFold(os.Getenv("NODE_CLUSTER_SCHED_POLICY"), "none") {
		return None
	}
	return RoundRobin
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
