package events

import (
	"sync"
	"testing"
)

func TestHistoryKeepsTheNewestInOrder(t *testing.T) {
	b := NewBus(3)
	for i := 0; i < 5; i++ {
		b.Publish(Event{Type: Status, PID: i})
	}
	h := b.History(0, 0)
	if len(h) != 3 || h[0].PID != 2 || h[2].PID != 4 || h[0].Seq != 3 || h[2].Seq != 5 {
		t.Fatalf("history = %+v, want pids 2..4 with seq 3..5", h)
	}
	if got := b.History(4, 0); len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("History(4) = %+v, want seq 5 only", got)
	}
	if got := b.History(0, 2); len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("History(0, 2) = %+v, want seq 4, 5", got)
	}
	if h[0].Time.IsZero() {
		t.Fatal("Publish did not stamp the time")
	}
}

func TestSubscribeHasNoGapAndNoDuplicate(t *testing.T) {
	b := NewBus(100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			b.Publish(Event{Type: Status})
		}
	}()
	past, s := b.Subscribe(0, -1)
	defer s.Close()
	wg.Wait()
	next := uint64(1)
	if len(past) > 0 {
		next = past[0].Seq
	}
	for _, e := range past {
		if e.Seq != next {
			t.Fatalf("backlog seq %d, want %d", e.Seq, next)
		}
		next++
	}
	for next <= 500 {
		e := <-s.C()
		if e.Seq != next {
			t.Fatalf("live seq %d, want %d", e.Seq, next)
		}
		next++
	}
}

func TestASlowSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	b := NewBus(10)
	_, slow := b.Subscribe(0, 0)
	_, fast := b.Subscribe(0, 0)
	for i := 0; i < subscriberBuffer+1; i++ {
		b.Publish(Event{Type: Status})
		if i < subscriberBuffer {
			<-fast.C()
		}
	}
	if !slow.Lagged() {
		t.Fatal("slow subscriber not marked lagged")
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("slow subscriber got %d buffered events before its channel closed, want %d", n, subscriberBuffer)
	}
	if fast.Lagged() {
		t.Fatal("fast subscriber dropped")
	}
	fast.Close()
	fast.Close()         // idempotent
	for range fast.C() { // the last event is still buffered; then the channel ends
	}
}
