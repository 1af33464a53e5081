package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// constantReply is what the baseline server answers to everything: the
// smallest reply Dovecot accepts as "continue".
const constantReply = `{"status":0,"msg":""}`

// constantHandler reads the request body (up to 64 KiB, like a policy door
// would) and answers constantReply.
func constantHandler() http.Handler {
	length := strconv.Itoa(len(constantReply))
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(rw, r.Body, 64<<10)); err != nil {
			http.Error(rw, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h := rw.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", length)
		io.WriteString(rw, constantReply)
	})
}

// serveConstant serves constantHandler on ln with Go's net/http server until
// ctx is done, then shuts down gracefully (at most 5 s).
func serveConstant(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           constantHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
