package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// HealthTimeout bounds GET /healthz's checks.
const HealthTimeout = 2 * time.Second

// WithHealth makes GET /healthz answer 200 only when check returns nil:
// 503 and the error's text (one line) otherwise.
func (s *Server) WithHealth(check func(ctx context.Context) error) *Server {
	s.health = check
	return s
}

// WithStatus adds what more fills in GET /v1/status: the doors, permits,
// firewall drift, GeoIP database and recent errors the daemon knows.
func (s *Server) WithStatus(more func(now time.Time, out *StatusJSON)) *Server {
	s.statusMore = more
	return s
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	HealthHandler(s.health).ServeHTTP(w, r)
}

// HealthHandler answers GET /healthz from check: "ok" with 200, or 503
// with the reason on one line.
func HealthHandler(check func(ctx context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
			defer cancel()
			// A check stuck past its deadline (a store that ignores the
			// context) still gets its answer out in time.
			done := make(chan error, 1)
			go func() { done <- check(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(HealthTimeout + time.Second):
				err = fmt.Errorf("no answer within %s", HealthTimeout)
			}
			if err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, oneLine(err.Error())+"\n")
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
