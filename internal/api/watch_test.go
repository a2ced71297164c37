package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// A backend without its own Watch is listed at each interval; frames carry no environment
// unless asked.
func TestWatchPollsABackendWithoutWatch(t *testing.T) {
	f := &apitest.Fake{}
	c := serve(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := f.Start(ctx, []appspec.App{{Name: "web", Script: "web.js", Env: map[string]string{"TOKEN": "s3cret"}}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	ch, err := c.Watch(ctx, api.WatchRequest{IntervalMS: 100})
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	if len(first.Procs) != 1 || first.Procs[0].Name != "web" || first.Procs[0].Env != nil || first.Time.IsZero() {
		t.Fatalf("first frame %+v", first)
	}
	if _, err := f.Stop(ctx, []string{"web"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
wait:
	for {
		select {
		case fr, ok := <-ch:
			if !ok {
				t.Fatal("the stream ended")
			}
			if fr.Procs[0].Status == "stopped" {
				break wait
			}
		case <-deadline:
			t.Fatal("no frame showed the stop")
		}
	}
	ch2, err := c.Watch(ctx, api.WatchRequest{Env: true})
	if err != nil {
		t.Fatal(err)
	}
	if fr := <-ch2; fr.Procs[0].Env["TOKEN"] != "s3cret" {
		t.Fatalf("Env: true: frame env %v", fr.Procs[0].Env)
	}
	cancel()
	for range ch { // closed once the request is cancelled
	}
}
