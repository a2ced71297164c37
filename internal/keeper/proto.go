package keeper

import "encoding/binary"

// The wire protocol. The keeper listens on a Unix SOCK_SEQPACKET socket: every request and every
// reply is one record (one sendmsg, one recvmsg), so there is no framing to get wrong and a file
// descriptor always travels in the record it belongs to. A record is a 16-byte header followed by
// an op-specific payload; integers are little-endian:
//
//	offset size
//	0      4    magic "KPR1"
//	4      1    op (a reply carries the request's op | 0x80, or 0xff for an error)
//	5      1    flags
//	6      2    n: a count (entries, exit records) or, in an error reply, the error code
//	8      8    arg: an op-specific number
//
// docs/keeper.md lists every op. Anything that does not parse is answered with an error record
// and the connection is closed; fds that came with it are closed.

const (
	magic     = 0x3152504b // "KPR1" in little-endian byte order
	hdrLen    = 16
	MaxName   = 100  // longest fd name
	maxArgv   = 4096 // longest UPDATE payload (NUL-terminated argv strings)
	maxArgs   = 64   // most argv strings in an UPDATE
	maxRecord = hdrLen + maxArgv
	fetchPage = 32 // entries (and fds) per FETCH reply
	exitPage  = 64 // exit records per EXITS reply
	exitLen   = 16 // bytes per exit record: u64 seq, u32 pid, u32 wait status
	statusLen = 40 // bytes of a PING reply payload
	maxRecvFD = 4  // control-message room for received fds (STORE takes exactly one)
	// maxUpdateTimeout bounds the ready timeout an UPDATE may ask for, in milliseconds.
	maxUpdateTimeout = 10 * 60 * 1000
)

// Ops.
const (
	opPing   = 1 // → status
	opStore  = 2 // payload name, one fd → ok
	opRemove = 3 // payload name → ok, arg 1 if it existed
	opFetch  = 4 // arg start index → n entries (u8 len, name) + n fds, arg next index, flagMore
	opExits  = 5 // arg ack (drop records with seq <= arg), flagWait → n records, arg lost, flagMore
	opReady  = 6 // from the daemon's own pid only → ok
	opUpdate = 7 // payload argv (each NUL-terminated), arg ready timeout ms → ok arg new pid, or error

	opReply = 0x80
	opErr   = 0xff

	flagMore = 1 // reply: more entries or records follow (ask again)
	flagWait = 1 // EXITS: park the request until there is a record to return
)

// Error codes (the n field of an error reply).
const (
	codeBadRequest   = 1 + iota // malformed record; the keeper closes the connection
	codeBadName                 // name empty, too long or not printable ASCII
	codeStoreFull               // the fd store is at Config.MaxEntries
	codeBusy                    // an update is already running, or the keeper is stopping
	codeNotDaemon               // READY from a process that is not the current daemon
	codeReadOnly                // STORE/REMOVE while an update's new daemon is on trial
	codeExec                    // UPDATE: the new executable cannot be opened
	codeUpdateFailed            // UPDATE: the new daemon did not come up; rolled back
	numCodes
)

var codeText = [numCodes]string{
	codeBadRequest:   "malformed request",
	codeBadName:      "bad fd name (1-100 bytes of printable ASCII, no spaces)",
	codeStoreFull:    "fd store full",
	codeBusy:         "busy: an update is running or the keeper is stopping",
	codeNotDaemon:    "READY is only accepted from the daemon the keeper started",
	codeReadOnly:     "the store is read-only while a new daemon is on trial",
	codeExec:         "cannot open the new daemon executable",
	codeUpdateFailed: "update failed; rolled back to the previous daemon",
}

type header struct {
	op, flags byte
	n         uint16
	arg       uint64
}

func putHeader(b []byte, h header) {
	binary.LittleEndian.PutUint32(b[0:], magic)
	b[4], b[5] = h.op, h.flags
	binary.LittleEndian.PutUint16(b[6:], h.n)
	binary.LittleEndian.PutUint64(b[8:], h.arg)
}

func getHeader(b []byte) (header, bool) {
	if len(b) < hdrLen || binary.LittleEndian.Uint32(b) != magic {
		return header{}, false
	}
	return header{op: b[4], flags: b[5], n: binary.LittleEndian.Uint16(b[6:]), arg: binary.LittleEndian.Uint64(b[8:])}, true
}

// validName reports whether b is a usable fd name: 1..MaxName bytes of printable ASCII, no spaces.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > MaxName {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// parseRequest checks one received record (b) that came with nfds descriptors, and returns its
// header and payload, or an error code. It never allocates and never panics.
func parseRequest(b []byte, nfds int) (header, []byte, int) {
	h, ok := getHeader(b)
	if !ok || len(b) > maxRecord {
		return h, nil, codeBadRequest
	}
	p := b[hdrLen:]
	switch h.op {
	case opPing, opReady, opFetch:
		if len(p) != 0 || nfds != 0 || h.flags != 0 || h.n != 0 {
			return h, nil, codeBadRequest
		}
		if h.op != opFetch && h.arg != 0 {
			return h, nil, codeBadRequest
		}
	case opExits:
		if len(p) != 0 || nfds != 0 || h.flags&^flagWait != 0 || h.n != 0 {
			return h, nil, codeBadRequest
		}
	case opStore, opRemove:
		want := 0
		if h.op == opStore {
			want = 1
		}
		if nfds != want || h.flags != 0 || h.n != 0 || h.arg != 0 {
			return h, nil, codeBadRequest
		}
		if !validName(p) {
			return h, nil, codeBadName
		}
	case opUpdate:
		if nfds != 0 || h.flags != 0 || h.n != 0 || h.arg > maxUpdateTimeout || !validArgv(p) {
			return h, nil, codeBadRequest
		}
	default:
		return h, nil, codeBadRequest
	}
	return h, p, 0
}

// validArgv checks an UPDATE payload: 1..maxArgs NUL-terminated strings, the first an absolute path.
func validArgv(p []byte) bool {
	if len(p) < 2 || len(p) > maxArgv || p[0] != '/' || p[len(p)-1] != 0 || p[1] == 0 {
		return false
	}
	n := 0
	for _, c := range p {
		if c == 0 {
			n++
		}
	}
	return n <= maxArgs
}

// splitArgv splits a payload accepted by validArgv.
func splitArgv(p []byte) []string {
	var out []string
	start := 0
	for i, c := range p {
		if c == 0 {
			out = append(out, string(p[start:i]))
			start = i + 1
		}
	}
	return out
}

// Status is the keeper's answer to PING.
type Status struct {
	KeeperPID    int
	DaemonPID    int    // 0 while no daemon runs
	Generation   uint32 // daemons started so far (also $CORRAL_KEEPER_GEN of the current one)
	DaemonReady  bool   // the current daemon has sent READY
	Updating     bool   // an UPDATE is in progress
	Entries      int    // fds in the store
	PendingExits int    // exit records not yet acknowledged
	NextSeq      uint64 // sequence number the next exit record will get
	LostExits    uint64 // exit records dropped because the table was full
}

func putStatus(b []byte, s *Status) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(s.KeeperPID))
	le.PutUint32(b[4:], uint32(s.DaemonPID))
	le.PutUint32(b[8:], s.Generation)
	b[12], b[13], b[14], b[15] = boolByte(s.DaemonReady), boolByte(s.Updating), 0, 0
	le.PutUint32(b[16:], uint32(s.Entries))
	le.PutUint32(b[20:], uint32(s.PendingExits))
	le.PutUint64(b[24:], s.NextSeq)
	le.PutUint64(b[32:], s.LostExits)
}

func getStatus(b []byte) (Status, bool) {
	if len(b) != statusLen {
		return Status{}, false
	}
	le := binary.LittleEndian
	return Status{
		KeeperPID: int(le.Uint32(b[0:])), DaemonPID: int(le.Uint32(b[4:])), Generation: le.Uint32(b[8:]),
		DaemonReady: b[12] != 0, Updating: b[13] != 0,
		Entries: int(le.Uint32(b[16:])), PendingExits: int(le.Uint32(b[20:])),
		NextSeq: le.Uint64(b[24:]), LostExits: le.Uint64(b[32:]),
	}, true
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// decodeNames decodes the payload of a FETCH reply: n names, each a length byte then the bytes.
func decodeNames(p []byte, n int) ([]string, bool) {
	names := make([]string, 0, n)
	for len(p) > 0 {
		l := int(p[0])
		if l == 0 || 1+l > len(p) || !validName(p[1:1+l]) {
			return nil, false
		}
		names = append(names, string(p[1:1+l]))
		p = p[1+l:]
	}
	return names, len(names) == n
}

// Exit is the end of a process the keeper reaped: an app orphaned by a daemon that died.
type Exit struct {
	Seq    uint64 // increasing from 1 over the keeper's life
	PID    int
	Status uint32 // the raw wait status; see syscall.WaitStatus
}

func decodeExits(p []byte, n int) ([]Exit, bool) {
	if len(p) != n*exitLen {
		return nil, false
	}
	out := make([]Exit, n)
	le := binary.LittleEndian
	for i := range out {
		r := p[i*exitLen:]
		out[i] = Exit{Seq: le.Uint64(r), PID: int(le.Uint32(r[8:])), Status: le.Uint32(r[12:])}
	}
	return out, true
}
