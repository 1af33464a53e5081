package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"mailgate/internal/store"
)

// TestOnceWhileDown: an unreachable store is logged once per outage, its
// end once; other errors are left to the caller every time.
func TestOnceWhileDown(t *testing.T) {
	var logs strings.Builder
	o := onceWhileDown{log: slog.New(slog.NewTextHandler(&logs, nil)), what: "expiring rules"}
	down := &store.Unavailable{Store: "PostgreSQL mg@127.0.0.1:5432/mg", Err: errors.New("connect: connection refused")}
	for range 3 {
		if !o.failed(down) {
			t.Fatalf("an unreachable store was left to the caller")
		}
	}
	if o.failed(errors.New("disk full")) {
		t.Errorf("another error was swallowed")
	}
	o.failed(nil)
	o.failed(nil)
	if got := strings.Count(logs.String(), "retrying every second"); got != 1 {
		t.Errorf("3 failures logged %d times, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "reachable again"); got != 1 {
		t.Errorf("the end of the outage logged %d times, want 1:\n%s", got, logs.String())
	}
}
