package dovecot

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/metrics"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// benchRequest is a reusable POST whose body is rewound each time, so the
// benchmarks measure the handler, not httptest.NewRequest.
type benchRequest struct {
	r    *http.Request
	body *bytes.Reader
	data []byte
}

func newBenchRequest(query, body string) *benchRequest {
	b := &benchRequest{data: []byte(body)}
	b.body = bytes.NewReader(b.data)
	b.r = httptest.NewRequest(http.MethodPost, "/?"+query, nil)
	b.r.Header.Set("X-API-Key", "  myapikey")
	b.r.Header.Set("Content-Type", "application/json")
	return b
}

func (b *benchRequest) next() *http.Request {
	b.body.Reset(b.data)
	b.r.Body = io.NopCloser(b.body)
	b.r.ContentLength = int64(len(b.data))
	return b.r
}

// discardWriter is a ResponseWriter that keeps nothing but the header map.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchEngine(b *testing.B) *policy.Engine {
	idx := rules.NewIndex()
	for _, r := range []rules.Rule{
		{ID: 1, Scope: rules.ScopeGlobal, Action: rules.Deny, Match: netip.MustParsePrefix("203.0.113.0/24")},
		{ID: 2, Scope: rules.ScopeAccount, Account: "alice@example.test", Service: rules.IMAP, Action: rules.Allow, Match: netip.MustParsePrefix("127.0.0.0/8")},
		{ID: 3, Scope: rules.ScopeAccount, Account: "@example.test", Service: rules.POP3, Action: rules.Allow},
	} {
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
		idx.Add(&r)
	}
	return policy.New(idx, nil)
}

// BenchmarkHandlerAllow is one before-auth allow call through ServeHTTP
// with a real engine, the decision log writing to io.Discard, and the API
// key checked. The session id changes every call so each is a first call.
func BenchmarkHandlerAllow(b *testing.B) {
	for _, bc := range []struct {
		name string
		w    func() http.ResponseWriter
	}{
		{"recorder", func() http.ResponseWriter { return httptest.NewRecorder() }},
		{"discard", func() http.ResponseWriter { return &discardWriter{h: http.Header{}} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			h := NewHandler(Config{APIKey: "myapikey", Now: func() time.Time { return now }},
				benchEngine(b), policy.NewDecisionLog(io.Discard), nil)
			req := newBenchRequest("command=allow", aliceBody)
			b.ReportAllocs()
			for b.Loop() {
				w := bc.w()
				h.ServeHTTP(w, req.next())
				// The same body twice would be the after-auth call;
				// a report resets the session. Keep it a first call:
				h.sessions.forget("zHU7R9RgWLZ/AAAB", now)
			}
		})
	}
}

// BenchmarkHandlerDeny is an allow call that the engine refuses.
func BenchmarkHandlerDeny(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	h := NewHandler(Config{Now: func() time.Time { return now }}, benchEngine(b), policy.NewDecisionLog(io.Discard), nil)
	req := newBenchRequest("command=allow", `{"device_id":"","login":"bob@example.test","protocol":"pop3","pwhash":"0687","remote":"127.0.0.1","session_id":"","tls":false}`)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req.next())
	}
	if w.code != 200 {
		b.Fatal(w.code)
	}
}

// BenchmarkConstantJSON is the floor: a handler that reads the body and
// writes a constant JSON reply, measured the same way.
func BenchmarkConstantJSON(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck
		w.Header().Set("Content-Type", "application/json")
		w.Write(replyOK) //nolint:errcheck
	})
	req := newBenchRequest("command=allow", aliceBody)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req.next())
	}
}

func BenchmarkParseRequest(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"allow", aliceBody},
		{"report", aliceOK},
		{"custom", `{"conn":{"mech":"PLAIN","secured":""},"device_id":"","local":"127.0.0.1","login":"alice@example.test","lport":"10143","protocol":"imap","pwhash":"06ca","real_remote":"127.0.0.61","remote":"127.0.0.61","rport":"41055","session_id":"t/9CUtRgX6B/AAA9","user":"alice@example.test","tls":false}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseEncodingJSON is the reference: the same bodies decoded by
// encoding/json into a struct (what readObject replaces).
func BenchmarkParseEncodingJSON(b *testing.B) {
	body := []byte(aliceBody)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var ref referenceRequest
		if err := json.Unmarshal(body, &ref); err != nil {
			b.Fatal(err)
		}
		if _, err := rules.ParseAddr(ref.Remote); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerAllowMetrics is HandlerAllow/discard with the metrics
// on, as serve wires them: the decision log's observer counts the verdict
// and the handler is timed for the latency histogram. The difference to
// HandlerAllow/discard is what the metrics cost per decision.
func BenchmarkHandlerAllowMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			dlog := policy.NewDecisionLog(io.Discard)
			m := metrics.New()
			if on {
				dlog.Observe(m)
			}
			h := NewHandler(Config{APIKey: "myapikey", Now: func() time.Time { return now }}, benchEngine(b), dlog, nil)
			req := newBenchRequest("command=allow", aliceBody)
			b.ReportAllocs()
			for b.Loop() {
				w := &discardWriter{h: http.Header{}}
				t0 := time.Now()
				h.ServeHTTP(w, req.next())
				if on {
					m.Latency("dovecot", time.Since(t0))
				}
				h.sessions.forget("zHU7R9RgWLZ/AAAB", now)
			}
		})
	}
}
