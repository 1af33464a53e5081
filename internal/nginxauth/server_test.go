package nginxauth

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer serves h on a loopback port with net/http's server, the way
// cmd/mailgate does, until the test ends.
func startServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: MaxHeaderBytes}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// nginxAsk does what nginx does for one login (protocols.md §2.1, §6 item
// 9): a new TCP connection, the request, then everything until the
// server closes. It returns the raw reply.
func nginxAsk(t *testing.T, addr, raw string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Error(err)
		return nil
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Error(err)
	}
	return reply
}

func parseReply(t *testing.T, reply []byte) http.Header {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(reply)), nil)
	if err != nil {
		t.Fatalf("reply %q: %v", reply, err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.ProtoMinor != 0 || !resp.Close {
		t.Errorf("reply %s, close %v: want HTTP/1.0 and the connection closed", resp.Proto, resp.Close)
	}
	return resp.Header
}

// TestLoopbackServer speaks HTTP/1.0 like nginx to a real server on a
// loopback socket: one connection per request, sequential and
// concurrent, and every reply fits nginx's 1024-byte buffer.
func TestLoopbackServer(t *testing.T) {
	ev := newEnv(t, newEngine(t, "global all deny 127.0.0.66"), nil, func(c *Config) {
		c.FailMessage = strings.Repeat("long failure text ", 40) // cut to maxMessage
	})
	addr := startServer(t, ev.h)

	reply := nginxAsk(t, addr, withSecret(nginxRequest("plain", "imap", "alice@example.test", "alicepw", "127.0.0.71", 1)))
	hd := parseReply(t, reply)
	if hd.Get("Auth-Status") != "OK" || hd.Get("Auth-Server") != "127.0.0.1" || hd.Get("Auth-Port") != "10143" || hd.Get("Date") != "" {
		t.Fatalf("reply:\n%s", reply)
	}

	hd = parseReply(t, nginxAsk(t, addr, withSecret(nginxRequest("plain", "smtp", "alice@example.test", "bad%20pass%25", "127.0.0.72", 1))))
	if st := hd.Get("Auth-Status"); !strings.HasPrefix(st, "long failure text") || len(st) > maxMessage ||
		hd.Get("Auth-Wait") != "3" || hd.Get("Auth-Error-Code") != "535 5.7.8" {
		t.Fatalf("reply: %v", hd)
	}

	// The longest replies must fit nginx's buffer.
	for _, raw := range []string{
		withSecret(nginxRequest("plain", "smtp", "alice@example.test", "wrong", "127.0.0.73", 1)),
		withSecret(nginxRequest("plain", "smtp", strings.Repeat("x", MaxLoginLen), "pw", "127.0.0.66", 1)),
		withSecret(nginxRequest("plain", "smtp", "alice@example.test", "alicepw", "::ffff:127.0.0.74", 1)),
		"GET / HTTP/1.0\r\n\r\n",
	} {
		if r := nginxAsk(t, addr, raw); len(r) > 1024 || len(r) == 0 {
			t.Errorf("reply of %d bytes, nginx reads at most 1024:\n%s", len(r), r)
		}
	}

	// Concurrent logins, each on its own connection, each answered right.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				ip := fmt.Sprintf("127.0.%d.%d", 10+g, 1+i)
				pass, want := "alicepw", "OK"
				if i%3 == 0 {
					pass, want = "nope", "long failure text"
				}
				r := nginxAsk(t, addr, withSecret(nginxRequest("plain", "imap", "alice@example.test", pass, ip, 1)))
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(r)), nil)
				if err != nil {
					t.Errorf("%s: %v", ip, err)
					return
				}
				if st := resp.Header.Get("Auth-Status"); !strings.HasPrefix(st, want) {
					t.Errorf("%s: Auth-Status %q, want %q", ip, st, want)
				}
			}
		})
	}
	wg.Wait()
	if n := ev.v.n(); n != 2+2+8*20 {
		t.Errorf("%d verifier calls, want %d", n, 2+2+8*20)
	}
	if n := strings.Count(ev.decisions.String(), "auth="); n != ev.v.n() {
		t.Errorf("%d result lines for %d checks", n, ev.v.n())
	}
}
