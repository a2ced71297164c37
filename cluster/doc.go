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
// Scheduling: with PolicyRoundRobin (the default, as in Node on Linux) the primary listens and passes
// each accepted connection to one worker, never more than one un-acknowledged hand-off per worker, so
// a busy or dying worker never loses a connection: it waits for the next free worker. Unlike Node's,
// the primary accepts only when a worker is free and hands the connection over at once: otherwise
// connections wait in the kernel's backlog, where they survive the primary (see Primary.Quiesce). With PolicyNone
// the listening socket itself is passed to every worker and the kernel balances. UDP sockets are
// always shared.
//
// Outside a cluster, Listen simply listens, so a program runs unchanged on its own.
//
// The package works on Linux. Elsewhere it compiles, Listen and ListenPacket work outside a cluster,
// and everything that needs an IPC channel fails with ErrNotSupported.
//
// # In a worker: what importing the package does
//
// Like Node, the package sets itself up when the program starts (in its init function), before main:
// in a process started with NODE_CHANNEL_FD in its environment (a cluster worker, or an app the corral
// daemon or Node's child_process.fork started with an IPC channel) it
//
//   - opens the IPC channel on that descriptor (the descriptor is duplicated close-on-exec and the
//     original closed) and starts the channel's reader and writer goroutines;
//   - unsets NODE_UNIQUE_ID, NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE, so that the
//     process's own children do not take themselves for workers;
//   - in a worker (NODE_UNIQUE_ID set), sends Node's "online" message to the primary.
//
// When a worker's channel closes without the primary having asked it to disconnect (the primary
// died, or killed it), the package calls os.Exit(0) at once, as a Node worker exits: workers never
// outlive their primary. A worker asked to disconnect is not exited by the package: Serve and
// ServeHTTP drain and return nil, and the program ends its main. A process that is not a worker is
// never exited by the package. Without NODE_CHANNEL_FD, init only reads the environment.
//
// # Adopting workers
//
// A supervisor that must outlive its own death (the corral daemon, with its keeper) keeps duplicates
// of the Primary's listening sockets (Primary.ListenerFiles) and of its end of each worker's channel
// (Worker.ChannelFile) in another process. The workers then see no end of file when the supervisor
// dies, and a new Primary takes them over: Primary.AdoptListener for each socket, Primary.Adopt for
// each worker, SetNextSeq and SetNextWorkerID to continue the numbering (Linux only). See adopt.go
// and docs/protocol.md §8.5 for what travels on the channels then.
//
// # Names
//
// File and type names follow Node's lib/internal/cluster, which helps a reader who knows Node and can
// surprise one who does not: worker.go is the primary's view of a worker process (type Worker, what
// Node's cluster.fork() returns); the worker process's own side, Node's child.js, is self.go (the
// channel to the primary, ID, Send, Messages), listen.go (Listen, ListenPacket) and rrlistener.go
// (the listeners they return). primary.go, events.go, handles.go and poll_linux.go are the primary.
//
// # Concurrency in a Primary: who owns what
//
// Goroutines. A Primary runs these, and Shutdown waits for all of them:
//
//   - The poll loop (poll_linux.go), one per Primary, from the first Fork (or AdoptListener, Adopt)
//     until the Primary is closed and the last worker's channel has closed (and, for an adopted
//     worker, its pidfd has reported the exit). It is the only goroutine that accepts connections
//     (rrHandle.acceptOne: accept4 and the hand-off, sendLineLocked, in one critical section under
//     Primary.mu; the loop watches a listening socket only while one of its workers is free,
//     rrHandle.armLocked, so connections otherwise wait in the backlog) and that reads
//     the workers' channels (ipc Channel.ReadOnce, which runs Worker.onMessage: queryServer,
//     listening, close, the reply callbacks such as rrHandle.onAcceptedLocked, and the handles'
//     ACK/NACK callback rrHandle.onHandleReply). It also watches the pidfd of each adopted worker
//     (Primary.onAdoptedExit).
//   - One writer goroutine per worker channel (package ipc). It writes what a sender could not write
//     at once and, when the channel closes, runs the close callbacks: onHandleReply with ErrClosed for
//     a hand-off never acknowledged (the connection goes to another worker), then
//     Primary.onChannelClosed (drops the worker from its handles, removes the channel from the poll
//     loop, queues the 'disconnect' event).
//   - One waiter per worker (Primary.wait): reaps the process, waits for its channel to close (closes
//     it 200ms after the exit if a grandchild keeps it open: CloseRead, so that what the worker wrote
//     before dying, such as the ACK of a hand-off, is still read; Close only if that does not end it
//     within a second), records the exit and queues the 'exit'
//     event. For an adopted worker, which is not our child (Primary.waitAdopted): waits for its
//     pidfd's report from the poll loop, calls AdoptSpec.Status under no lock, then the same.
//   - The event goroutine (eventQueue in events.go), which exists while events are queued: it runs
//     the user's handlers one at a time, in event order, and closes Worker.Done just before the exit
//     handlers.
//
// All state is guarded by locks, not owned by a goroutine; the goroutines above only decide where
// callbacks run.
//
// Locks, outermost first:
//
//  1. ipc Channel.readMu: held by the poll loop while it reads one channel and runs that channel's
//     OnMessage and ACK callbacks (which take Primary.mu), and for a moment by the channel's writer
//     when it closes, so that the 'disconnect' processing follows the last message. Nothing in this
//     package takes it while holding another lock.
//  2. Primary.mu: every mutable field of the Primary (workers, handles, handlers, settings, closed),
//     the fields of each Worker marked "guarded by p.mu" (its reply callbacks included) and the state
//     of every handle (rrHandle's free list, queue and hand-offs in flight; sharedHandle's workers).
//     While holding it the package may send on a channel, close a channel (ipc never runs a callback
//     on the sender's goroutine, even when the write fails), add, remove, watch and unwatch poll-loop
//     entries, push events, bind, accept on (non-blocking) and close sockets and descriptors. It never waits for another goroutine of the
//     Primary under it, and never runs user code.
//  3. Leaves, taken under Primary.mu or alone, under which nothing else is taken: pollLoop.mu (the
//     loop's descriptor table; the loop calls handlers without it), eventQueue.mu (the queue; events
//     run without it), ipc Channel.mu (a channel's send queue).
//
// Where each callback runs:
//
//	callback                                  goroutine        locks held
//	Worker.onMessage (ipc OnMessage)          poll loop        Channel.readMu
//	reply callbacks (Worker.callbacks)        poll loop        Channel.readMu, Primary.mu
//	rrHandle.onHandleReply, ACK or NACK       poll loop        Channel.readMu
//	rrHandle.onHandleReply, ErrClosed         channel writer   none
//	Primary.onChannelClosed (ipc OnClose)     channel writer   none
//	rrHandle.acceptOne                        poll loop        none
//	Primary.onAdoptedExit (pidfd readable)    poll loop        none
//	adoption sync's handle callback, ACK/NACK poll loop        Channel.readMu
//	adoption sync's handle callback, ErrClosed channel writer   none
//	AdoptSpec.Status                          waiter           none
//	user handlers (OnFork ... OnExit)         event goroutine  none
//
// The user's calls (Fork, Adopt, AdoptListener, Workers, Worker.Send, Disconnect, Kill, Close,
// Quiesce, Shutdown) take Primary.mu briefly and never call user code; they may be made from
// handlers, except Shutdown, which waits for the handlers, and Quiesce, which waits for the poll loop
// to read the workers' ACKs (it is not called back from it, so it may be called from a handler, but
// blocks that handler's successors meanwhile).
//
// # Concurrency in a worker
//
// The channel's reader goroutine runs the messages from the primary (processState.onMessage: a
// handed-over connection goes to its rrListener's queue; the disconnect request runs the stop
// functions, such as Serve's, then closes the listeners); its writer goroutine runs the close
// callback (processState.onClose: wakes a Listen waiting for an answer, or exits the process);
// Messages is fed by an eventQueue goroutine, so a slow reader never stalls the channel. Locks:
// processState.mu and rrListener.mu are leaves, except that ipc sends and eventQueue.push happen
// under processState.mu; stop functions and replies run after unlocking.
package cluster
