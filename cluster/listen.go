package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file is how a worker gets a socket: the queryServer request Node's net.js sends for a listen
// call, the primary's answer, and the 'listening' and 'close' notices.

// Listen announces on the network address like net.Listen. In a cluster worker the primary owns the
// socket: with round-robin scheduling the returned listener yields the connections the primary hands
// over; with PolicyNone it is the shared socket itself. Outside a cluster it is net.Listen. Networks:
// "tcp", "tcp4", "tcp6", "unix".
//
// In a worker Listen waits for the primary's answer. If the primary asks this worker to disconnect
// meanwhile (or had already), it returns an error wrapping ErrDisconnecting: the worker should stop,
// not serve. If the channel closes otherwise the worker process exits (see the package
// documentation), so Listen never waits forever for an answer that cannot come.
func Listen(network, address string) (net.Listener, error) {
	if !IsWorker() {
		return net.Listen(network, address)
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil, fmt.Errorf("cluster: listen %s %s: unsupported network", network, address)
	}
	listenErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	req, tuple, rep, err := ask(network, address)
	if err != nil {
		return nil, listenErr(err)
	}
	if rep.fd >= 0 { // PolicyNone: the primary sent the listening socket itself
		ln, err := openShared(req, tuple, rep, func(fd int, ref *shareRef) (*sharedListener, error) {
			if err := unix.Listen(fd, 511); err != nil && !errors.Is(err, syscall.EINVAL) {
				unix.Close(fd)
				return nil, err
			}
			f := os.NewFile(uintptr(fd), "listener")
			defer f.Close()
			ln, err := net.FileListener(f)
			if err != nil {
				return nil, err
			}
			return &sharedListener{Listener: ln, ref: ref}, nil
		})
		if err != nil {
			return nil, listenErr(err)
		}
		return ln, nil
	}
	l := &rrListener{key: rep.m.Key, tuple: tuple, index: *req.Index, network: network,
		ready: make(chan struct{}, 1), done: make(chan struct{})}
	l.addr = rrAddr(network, address, rep.m.Sockname)
	if !self.register(l.key, nil, l) {
		self.release(l.key, tuple, l.index)
		return nil, listenErr(ErrDisconnecting)
	}
	self.announce(req, l.addr)
	return l, nil
}

// ListenPacket announces on a UDP address like net.ListenPacket. In a cluster worker the socket is
// bound by the primary and shared by all workers, as in Node; outside a cluster it is
// net.ListenPacket. It waits for the primary as Listen does.
func ListenPacket(network, address string) (net.PacketConn, error) {
	if !IsWorker() {
		return net.ListenPacket(network, address)
	}
	if network != "udp4" && network != "udp6" && network != "udp" {
		return nil, fmt.Errorf("cluster: listen packet %s %s: unsupported network", network, address)
	}
	listenErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	req, tuple, rep, err := ask(network, address)
	if err != nil {
		return nil, listenErr(err)
	}
	if rep.fd < 0 {
		self.release(rep.m.Key, tuple, *req.Index)
		return nil, listenErr(errors.New("primary sent no socket"))
	}
	pc, err := openShared(req, tuple, rep, func(fd int, ref *shareRef) (*sharedPacketConn, error) {
		f := os.NewFile(uintptr(fd), "udp")
		defer f.Close()
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, err
		}
		return &sharedPacketConn{PacketConn: pc, ref: ref}, nil
	})
	if err != nil {
		return nil, listenErr(err)
	}
	return pc, nil
}

// sharedServer is what openShared makes of a shared socket.
type sharedServer interface {
	*sharedListener | *sharedPacketConn
	Close() error
}

// openShared turns the socket the primary sent (PolicyNone, and UDP always) into a server with
// open, which owns rep.fd, registers it so that a disconnect closes it, and announces it. On failure
// the listen index is released and the primary told.
func openShared[S sharedServer](req *wireMsg, tuple string, rep *wireReply, open func(fd int, ref *shareRef) (S, error)) (S, error) {
	ref := &shareRef{key: rep.m.Key, tuple: tuple, index: *req.Index}
	srv, err := open(rep.fd, ref)
	if err != nil {
		self.release(ref.key, tuple, ref.index)
		return srv, err
	}
	if !self.register(ref.key, func() { srv.Close() }, nil) {
		srv.Close() // releases the index
		var zero S
		return zero, ErrDisconnecting
	}
	var addr net.Addr
	switch s := any(srv).(type) {
	case *sharedListener:
		addr = s.Addr()
	case *sharedPacketConn:
		addr = s.LocalAddr()
	}
	self.announce(req, addr)
	return srv, nil
}

// ask sends the queryServer request Node's net.js would send for the same listen call and waits for
// the primary's reply.
func ask(network, address string) (*wireMsg, string, *wireReply, error) {
	req, tuple, err := queryFor(network, address)
	if err != nil {
		return nil, "", nil, err
	}
	rep, err := self.query(req, tuple)
	if err != nil {
		return nil, "", nil, err
	}
	return req, tuple, rep, nil
}

// leaving turns err into ErrDisconnecting when the primary asked this worker to leave.
func (s *processState) leaving(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return ErrDisconnecting
	}
	return err
}

// register records a new server under key, unless a disconnect already closed this worker's servers
// (it raced with the listen request): then it reports false and the caller closes the server.
func (s *processState) register(key string, closeShared func(), rr *rrListener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return false
	}
	if rr != nil {
		s.servers[key] = rr
	} else {
		s.shared[key] = closeShared
	}
	return true
}

// queryFor builds the queryServer request Node's net.js would send for the same listen call.
func queryFor(network, address string) (*wireMsg, string, error) {
	m := &wireMsg{Act: "queryServer", Data: rawNull}
	switch network {
	case "unix":
		p := address
		if !strings.HasPrefix(p, "@") {
			if abs, err := absPath(p); err == nil {
				p = abs
			}
		}
		m.Address, m.Port, m.AddressType = rawString(p), rawInt(-1), rawInt(-1)
		m.Backlog = rawInt(511)
	default:
		host, portStr, err := net.SplitHostPort(address)
		if err != nil {
			return nil, "", err
		}
		port, err := net.LookupPort(strings.TrimSuffix(network, "6"), portStr)
		if err != nil {
			return nil, "", err
		}
		udp := strings.HasPrefix(network, "udp")
		at := "4"
		if host == "" {
			m.Address = rawNull
			if network == "tcp6" || network == "udp6" {
				m.Address = rawString("::")
				at = "6"
			} else if network == "tcp4" || network == "udp4" || udp {
				m.Address = rawString("0.0.0.0")
			}
		} else {
			ip := net.ParseIP(host)
			if ip == nil {
				ips, err := net.LookupIP(host)
				if err != nil {
					return nil, "", fmt.Errorf("lookup %s: %w", host, err)
				}
				if len(ips) == 0 {
					return nil, "", fmt.Errorf("lookup %s: no addresses", host)
				}
				ip = ips[0]
				for _, cand := range ips { // prefer the family the network asks for, IPv4 otherwise
					if (cand.To4() != nil) != (network == "tcp6" || network == "udp6") {
						ip = cand
						break
					}
				}
			}
			if ip.To4() == nil {
				at = "6"
			}
			m.Address = rawString(ip.String())
			if !udp {
				m.Flags = rawInt(0)
			}
		}
		m.Port = rawInt(port)
		if udp {
			m.AddressType = rawString("udp" + at)
			m.FD = rawInt(-1)
			m.Flags = rawInt(0)
		} else {
			m.AddressType = rawInt(map[string]int{"4": 4, "6": 6}[at])
			m.Backlog = rawInt(511)
		}
	}
	tuple := jsString(m.Address) + ":" + jsString(m.Port) + ":" + jsString(m.AddressType) + ":" + jsString(m.FD)
	return m, tuple, nil
}

func absPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return wd + "/" + p, nil
}

// query sends queryServer and waits for the primary's answer, or for the disconnect request or the
// channel's close, which wake it with ErrDisconnecting or ErrNotConnected (abandonQueries).
func (s *processState) query(req *wireMsg, tuple string) (*wireReply, error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	s.mu.Lock()
	if s.left {
		s.mu.Unlock()
		return nil, ErrDisconnecting
	}
	set := s.indexes[tuple]
	if set == nil {
		set = &indexSet{used: make(map[int]struct{})}
		s.indexes[tuple] = set
	}
	idx := set.next
	set.next++
	set.used[idx] = struct{}{}
	s.mu.Unlock()
	req.Index = &idx
	ch, err := s.sendCluster(req, true)
	if err != nil {
		s.release("", tuple, idx)
		return nil, s.leaving(err)
	}
	rep, ok := <-ch
	if !ok {
		s.release("", tuple, idx)
		return nil, s.leaving(ErrNotConnected)
	}
	if n, ok := rawInt64(rep.m.Errno); ok && n != 0 {
		if rep.fd >= 0 {
			unix.Close(rep.fd)
		}
		s.release("", tuple, idx)
		return nil, os.NewSyscallError("bind", syscall.Errno(-n))
	}
	return rep, nil
}

// announce sends 'listening': the queryServer request again, with the port the socket got (which
// differs from the request's for port 0), as Node's child.js does.
func (s *processState) announce(req *wireMsg, addr net.Addr) {
	m := *req
	m.Act = "listening"
	switch a := addr.(type) {
	case *net.TCPAddr:
		if a.Port > 0 {
			m.Port = rawInt(a.Port)
		}
	case *net.UDPAddr:
		if a.Port > 0 {
			m.Port = rawInt(a.Port)
		}
	}
	s.sendCluster(&m, false)
}

// release forgets a listen index and, with a key, tells the primary the server closed.
func (s *processState) release(key, tuple string, idx int) {
	s.mu.Lock()
	if set := s.indexes[tuple]; set != nil {
		delete(set.used, idx)
		if len(set.used) == 0 {
			delete(s.indexes, tuple)
		}
	}
	if key != "" {
		delete(s.servers, key)
		delete(s.shared, key)
	}
	s.mu.Unlock()
	if key != "" && s.ch != nil {
		s.sendCluster(&wireMsg{Act: "close", Key: key}, false)
	}
}
