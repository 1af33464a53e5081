package postfix

import (
	"bufio"
	"sync/atomic"
	"testing"
	"time"
)

// TestLatencyReported checks that every answered request is reported to
// Config.Latency, once, on each kind of listener.
func TestLatencyReported(t *testing.T) {
	for _, kind := range []string{"policy", "socketmap", "tcp:client"} {
		t.Run(kind, func(t *testing.T) {
			var n atomic.Int64
			cfg := DefaultConfig()
			cfg.Latency = func(d time.Duration) {
				if d < 0 {
					t.Errorf("negative latency %v", d)
				}
				n.Add(1)
			}
			ev := newEnv(t, cfg, newEngine(t, nil, nil))
			_, addr := startServer(t, ev.h, testLogger(&ev.diags), kind)
			c := dialFrom(t, "127.0.0.94", addr)
			br := bufio.NewReader(c)
			var raw string
			switch kind {
			case "policy":
				raw = pfRequest(nil)
			case "socketmap":
				raw = "17:client 127.0.0.94,"
			default:
				raw = "get 127.0.0.94\n"
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// The server reports a request's time after writing its
			// answer: once the third answer is here, the first two are
			// reported.
			for range 3 {
				if _, err := c.Write([]byte(raw)); err != nil {
					t.Fatal(err)
				}
				if got, closed, err := readAnswer(br, kind); err != nil || closed {
					t.Fatalf("answer %q, closed %v, %v", got, closed, err)
				}
			}
			if got := n.Load(); got < 2 || got > 3 {
				t.Errorf("Latency called %d times after 3 answers, want 2 or 3", got)
			}
		})
	}
}
