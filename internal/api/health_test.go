package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthHandler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(context.Context) error
		code  int
		body  string
	}{
		{"no check", nil, 200, "ok\n"},
		{"healthy", func(context.Context) error { return nil }, 200, "ok\n"},
		{"store down", func(context.Context) error { return errors.New("store does not answer: disk I/O error\nmore") }, 503, "store does not answer: disk I/O error\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			HealthHandler(tc.check).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if w.Code != tc.code || w.Body.String() != tc.body {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
		})
	}
}

func TestDriftLines(t *testing.T) {
	if n := driftLines(""); n != 0 {
		t.Errorf("no diff: %d", n)
	}
	if n := driftLines(" set bans4 {\n-  elements = { 192.0.2.1 }\n+  elements = { 192.0.2.2 }\n"); n != 2 {
		t.Errorf("two changed lines: %d", n)
	}
}
