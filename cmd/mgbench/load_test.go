package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// startConstant runs the baseline server on 127.0.0.1:0 until the test ends.
func startConstant(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveConstant(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveConstant: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/policy"
}

func loadCfg(t *testing.T, url string, concurrency int, d time.Duration) *loadConfig {
	t.Helper()
	tg, err := parseTarget(url)
	if err != nil {
		t.Fatal(err)
	}
	return &loadConfig{
		target: tg, concurrency: concurrency, duration: d, timeout: 2 * time.Second,
		logins: 100, addresses: 100,
	}
}

func TestLoadAgainstConstant(t *testing.T) {
	url := startConstant(t)
	for _, report := range []bool{false, true} {
		cfg := loadCfg(t, url, 4, 300*time.Millisecond)
		cfg.report = report
		cfg.warmup = 50 * time.Millisecond
		res, err := runLoad(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("report=%v: %d requests in %v, %.0f/s, p50 %v p99 %v", report, res.Requests, res.Duration, res.rps(),
			res.Hist.percentile(0.5), res.Hist.percentile(0.99))
		if res.Requests == 0 || res.Errors != 0 {
			t.Fatalf("requests %d errors %d (%s), want > 0 and 0", res.Requests, res.Errors, res.FirstError)
		}
		if res.Hist.n != res.Requests || res.Allow+res.Report != res.Requests {
			t.Fatalf("histogram has %d, allow+report %d+%d, requests %d", res.Hist.n, res.Allow, res.Report, res.Requests)
		}
		if report {
			// Each worker alternates, so the two counts differ by at most one per worker.
			if d := int64(res.Allow) - int64(res.Report); d < -4 || d > 4 {
				t.Fatalf("allow %d report %d: not alternating", res.Allow, res.Report)
			}
		} else if res.Report != 0 {
			t.Fatalf("%d report calls without --report", res.Report)
		}
		if res.Duration < 300*time.Millisecond || res.Duration > 3*time.Second {
			t.Fatalf("measured duration %v for a 300ms run", res.Duration)
		}
	}
}

// TestLoadSendsDovecotRequests checks what arrives at the server: one
// connection per worker, Dovecot's headers, valid bodies, allow then report
// for the same session.
func TestLoadSendsDovecotRequests(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	var bad []string
	lastAllow := map[string]string{} // remote conn → session of its last allow
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Login   string `json:"login"`
			Session string `json:"session_id"`
		}
		err := json.Unmarshal(body, &req)
		mu.Lock()
		conns[r.RemoteAddr] = true
		switch {
		case err != nil:
			bad = append(bad, "bad json: "+string(body))
		case r.Method != http.MethodPost || r.URL.Path != "/policy":
			bad = append(bad, r.Method+" "+r.URL.String())
		case r.Header.Get("X-API-Key") != "secret" || r.Header.Get("User-Agent") != "dovecot/auth-policy-client" ||
			r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Date") == "":
			bad = append(bad, "headers: "+r.Header.Get("X-API-Key")+"/"+r.Header.Get("User-Agent"))
		case r.URL.RawQuery == "command=allow":
			lastAllow[r.RemoteAddr] = req.Session
		case r.URL.RawQuery == "command=report":
			if lastAllow[r.RemoteAddr] != req.Session {
				bad = append(bad, "report for session "+req.Session+" after allow for "+lastAllow[r.RemoteAddr])
			}
			delete(lastAllow, r.RemoteAddr)
		default:
			bad = append(bad, "query "+r.URL.RawQuery)
		}
		mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		io.WriteString(rw, `{"status":0,"msg":"ok"}`)
	}))
	defer srv.Close()

	cfg := loadCfg(t, srv.URL+"/policy", 3, 200*time.Millisecond)
	cfg.apiKey = "secret"
	cfg.report = true
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("requests %d errors %d (%s)", res.Requests, res.Errors, res.FirstError)
	}
	if len(bad) > 0 {
		t.Fatalf("%d bad requests, first: %s", len(bad), bad[0])
	}
	if len(conns) != 3 {
		t.Fatalf("server saw %d connections, want 3 (one keep-alive connection per worker)", len(conns))
	}
}

func TestLoadCountsErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		kind    int
	}{
		{"HTTP 500", func(rw http.ResponseWriter, r *http.Request) {
			rw.WriteHeader(http.StatusInternalServerError)
			io.WriteString(rw, `{"status":0,"msg":""}`)
		}, errStatus},
		{"HTTP 204", func(rw http.ResponseWriter, r *http.Request) {
			rw.WriteHeader(http.StatusNoContent)
		}, errStatus},
		{"no status", func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, `{"msg":"hi"}`)
		}, errBody},
		{"status is a string", func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, `{"status":"-1"}`)
		}, errBody},
		{"not JSON", func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, `status: 0`)
		}, errBody},
		{"body too large", func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, `{"status":0,"msg":"`+strings.Repeat("x", maxReplyBody)+`"}`)
		}, errBody},
		{"connection dropped", func(rw http.ResponseWriter, r *http.Request) {
			c, _, err := rw.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}, errIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			res, err := runLoad(context.Background(), loadCfg(t, srv.URL, 2, 150*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.Errors != res.Requests || res.ErrorsBy[tt.kind] != res.Errors {
				t.Fatalf("requests %d errors %d by kind %v, want every request a %s error",
					res.Requests, res.Errors, res.ErrorsBy, errKindNames[tt.kind])
			}
			if res.FirstError == "" {
				t.Fatal("no first error recorded")
			}
		})
	}
}

func TestLoadCountsConnectErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there now
	res, err := runLoad(context.Background(), loadCfg(t, url, 2, 150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors == 0 || res.ErrorsBy[errConnect] != res.Errors {
		t.Fatalf("requests %d errors %v, want only connect errors", res.Requests, res.ErrorsBy)
	}
	// Failed dials back off: not thousands of them.
	if res.Errors > 2*(150/50+2) {
		t.Fatalf("%d connect errors in 150ms with 2 workers: no backoff", res.Errors)
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	// A server that never answers: cancelling must not wait for the timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := loadCfg(t, "http://"+ln.Addr().String()+"/", 2, time.Minute)
	cfg.timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := runLoad(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("runLoad took %v after cancel", el)
	}
	if res.Errors != 0 || res.Requests != 0 {
		t.Fatalf("interrupted requests counted: %d requests %d errors", res.Requests, res.Errors)
	}
}

func TestLoadConfigLimits(t *testing.T) {
	base := func() *loadConfig { return loadCfg(t, "http://127.0.0.1:1/", 1, time.Second) }
	tests := []struct {
		name string
		mod  func(*loadConfig)
		err  string
	}{
		{"concurrency 0", func(c *loadConfig) { c.concurrency = 0 }, "concurrency"},
		{"concurrency 1025", func(c *loadConfig) { c.concurrency = 1025 }, "concurrency"},
		{"duration 0", func(c *loadConfig) { c.duration = 0 }, "duration"},
		{"duration 11m", func(c *loadConfig) { c.duration = 11 * time.Minute }, "duration"},
		{"warmup 2m", func(c *loadConfig) { c.warmup = 2 * time.Minute }, "warmup"},
		{"logins 0", func(c *loadConfig) { c.logins = 0 }, "logins"},
		{"addresses too many", func(c *loadConfig) { c.addresses = maxAddresses + 1 }, "addresses"},
		{"api key newline", func(c *loadConfig) { c.apiKey = "a\r\nX-Evil: 1" }, "api key"},
	}
	for _, tt := range tests {
		c := base()
		tt.mod(c)
		if _, err := runLoad(context.Background(), c); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.err)
		}
	}
	c := base()
	c.concurrency, c.duration = maxConcurrency, maxDuration
	if err := c.validate(); err != nil {
		t.Errorf("the maxima must be allowed: %v", err)
	}
}

func TestRunCommandLine(t *testing.T) {
	url := startConstant(t)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"dovecot", "--url", url, "--concurrency", "2", "--duration", "100ms", "--json", "--report"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v (stderr %s)", err, errOut.String())
	}
	var got jsonResult
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if got.Requests == 0 || got.Errors != 0 || got.RPS <= 0 || got.P50us <= 0 || got.P99us < got.P50us || got.MaxUs < got.P999us || !got.Report {
		t.Fatalf("implausible result %+v", got)
	}

	out.Reset()
	if err := run(context.Background(), []string{"dovecot", "--url", url, "--concurrency", "1", "--duration", "50ms"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"requests:", "errors:      0", "duration:", "requests/s:", "p50", "p90", "p99", "p99.9", "max"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, out.String())
		}
	}

	for _, args := range [][]string{
		{"dovecot", "--url", "http://10.0.0.1:4001/"},
		{"dovecot", "--url", "http://mail.example.com/"},
		{"constant", "--listen", "0.0.0.0:4999"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%v: err = %v, want a loopback refusal", args, err)
		}
	}
	for _, args := range [][]string{{}, {"nope"}, {"dovecot"}, {"dovecot", "--url", url, "extra"}, {"dovecot", "--bogus"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestConstantHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/?command=allow", strings.NewReader(`{"login":"a"}`))
	constantHandler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != constantReply || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 65<<10)))
	constantHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: status %d", rec.Code)
	}
}
