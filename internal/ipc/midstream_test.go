package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A channel taken over from a reader that died may begin inside a line: with MidStream the tail is
// dropped, the channel stays open, and what follows is delivered, on both kinds of reader.
func TestMidStreamDropsTheTailOfALine(t *testing.T) {
	for _, external := range []bool{false, true} {
		for _, c := range []struct {
			name, first string
			delivered   bool
		}{
			{"tail of an object", `ccepted":true,"seq":41}`, false},
			{"tail of a number", `345`, false},
			{"tail of a string", `"x\""`, false},
			{"whole object", `{"cmd":"NODE_CLUSTER","act":"listening","seq":3}`, true},
			{"whole array", ` [1,2]`, true},
		} {
			t.Run(fmt.Sprintf("external=%v/%s", external, c.name), func(t *testing.T) {
				got := make(chan Message, 10)
				closed := make(chan error, 1)
				ch, peer := pair(t, Options{OnMessage: func(m Message) { got <- m }, OnClose: func(err error) { closed <- err },
					MidStream: true, ExternalRead: external})
				if external {
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() { // the owner's poll loop
						defer close(done)
						pfd := []unix.PollFd{{Fd: int32(ch.FD()), Events: unix.POLLIN}}
						for {
							select {
							case <-stop:
								return
							default:
							}
							if n, _ := unix.Poll(pfd, 100); n > 0 && !ch.ReadOnce() {
								return
							}
						}
					}()
					t.Cleanup(func() { close(stop); <-done })
				}
				// The first line arrives in two pieces, to cross a read.
				peer.Write([]byte(c.first[:len(c.first)/2]))
				peer.Write([]byte(c.first[len(c.first)/2:] + "\n" + `{"after":1}` + "\n"))
				if c.delivered {
					if m := within(t, got); string(m.Raw) != strings.TrimSpace(c.first) {
						t.Fatalf("first line delivered as %s, want %s", m.Raw, c.first)
					}
				}
				if m := within(t, got); string(m.Raw) != `{"after":1}` {
					t.Fatalf("got %s, want the line after the first", m.Raw)
				}
				// Only the first line is special: a number later is a message.
				peer.Write([]byte("345\n"))
				if m := within(t, got); string(m.Raw) != `345` {
					t.Fatalf("got %s, want 345", m.Raw)
				}
				if err := ch.Send("still-open"); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 100)
				if n, _ := peer.Read(buf); string(buf[:n]) != "\"still-open\"\n" {
					t.Fatalf("peer read %q", buf[:n])
				}
				select {
				case err := <-closed:
					t.Fatalf("channel closed: %v", err)
				default:
				}
			})
		}
	}
}

// The claim MidStream rests on: a proper suffix of a valid JSON text is never a valid JSON object or
// array. Checked on random JSON values with nesting, escapes and strings that look like JSON.
func TestNoSuffixOfAValidLineIsAnObjectOrArray(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var gen func(depth int) any
	gen = func(depth int) any {
		pieces := []string{`{`, `}`, `[`, `]`, `"`, `\`, `:`, `,`, `{"a":1}`, `["x"]`, `\"`, `\\`, "é", "\u2028", ` `, `1`, `null`}
		switch k := rng.Intn(7); {
		case k == 0 || depth > 4:
			var b strings.Builder
			for i := rng.Intn(6); i > 0; i-- {
				b.WriteString(pieces[rng.Intn(len(pieces))])
			}
			return b.String()
		case k == 1:
			return rng.Intn(1000000) - 500
		case k == 2:
			return rng.Float64() * 1e6
		case k == 3:
			return []any{nil, true, false}[rng.Intn(3)]
		case k == 4:
			var a []any
			for i := rng.Intn(4); i > 0; i-- {
				a = append(a, gen(depth+1))
			}
			return a
		default:
			m := map[string]any{}
			for i := rng.Intn(4); i > 0; i-- {
				m[fmt.Sprint(gen(5))] = gen(depth + 1)
			}
			return m
		}
	}
	checked := 0
	for i := 0; i < 20000; i++ {
		line, err := json.Marshal(gen(0))
		if err != nil {
			t.Fatal(err)
		}
		for j := 1; j < len(line); j++ {
			tail := line[j:]
			if objectOrArray(tail) {
				checked++
				if json.Valid(tail) {
					t.Fatalf("the tail %s of %s is a valid object or array", tail, line)
				}
			}
		}
	}
	if checked < 10000 {
		t.Fatalf("only %d tails looked like objects or arrays", checked)
	}
}

// File is a duplicate of the socket: the peer sees no end of file while it is open, and it is
// refused once the channel has closed.
func TestFileKeepsTheChannelOpen(t *testing.T) {
	closed := make(chan struct{})
	ch, peer := pair(t, Options{OnClose: func(error) { close(closed) }})
	f, err := ch.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ch.Close()
	within(t, closed)
	if _, err := ch.File(); !errors.Is(err, ErrClosed) {
		t.Fatalf("File after Close: %v, want ErrClosed", err)
	}
	// The duplicate still holds the socket: a write from the peer succeeds and is readable from it.
	if _, err := peer.Write([]byte("\"kept\"\n")); err != nil {
		t.Fatalf("peer write with the duplicate open: %v", err)
	}
	buf := make([]byte, 100)
	n, err := unix.Read(int(f.Fd()), buf)
	if err != nil || string(buf[:n]) != "\"kept\"\n" {
		t.Fatalf("read from the duplicate: %q, %v", buf[:n], err)
	}
	if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
		t.Fatal("the duplicate is not close-on-exec")
	}
}
