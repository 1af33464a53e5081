package postfix

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/sendlimit"
)

// benchWant is the answer to benchRequests' request i.
func benchWant(i int) string {
	return [4]string{"OK", "DUNNO", "DUNNO", "REJECT"}[i%4]
}

// benchRequests are policy requests with the attributes of protocols.md
// §3.2: relay checks from addresses with and without a permit, and
// authenticated senders, allowed and refused, over many addresses and
// logins.
func benchRequests(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		set := map[string]string{
			"client_address": fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
			"instance":       fmt.Sprintf("%x.6b02554c.a8191.0", i),
		}
		switch i % 4 {
		case 0:
			set["policy_context"] = "relaycheck" // a permit: OK
		case 1:
			set["policy_context"] = "relaycheck"
			set["client_address"] = fmt.Sprintf("192.0.2.%d", i&0xff) // no permit: DUNNO
		case 2:
			set["sasl_method"], set["sasl_username"] = "PLAIN", fmt.Sprintf("user%d@example.test", i%1000) // allowed: DUNNO
		case 3:
			set["sasl_method"], set["sasl_username"] = "PLAIN", "shop@example.test" // refused: REJECT
		}
		out[i] = []byte(pfRequest(set))
	}
	return out
}

// benchHandler has rules, permits for 10.0.0.0/8 and a limiter that lets
// everything through; decision lines are formatted and discarded.
func benchHandler(b *testing.B) *Handler {
	e := newEngine(b, []string{"shop@example.test smtp allow 10.255.255.1", "global all deny 203.0.113.0/24"}, nil)
	p := &fakePermits{}
	p.add("10.0.0.0/8", "alice@example.test")
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return testNow }
	return NewHandler(cfg, e, p, allowAll{}, policy.NewDecisionLog(io.Discard), nil)
}

// BenchmarkPolicy measures policy requests per second over persistent
// loopback connections: 64 concurrent clients, each with its own
// connection, as 64 smtpd processes would (run with -benchmem).
func BenchmarkPolicy(b *testing.B) {
	h := benchHandler(b)
	_, addr := startServer(b, h, nil, "policy")
	reqs := benchRequests(4096)
	const clients = 64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		i := int(next.Add(1)) * 61
		for pb.Next() {
			i++
			if _, err := c.Write(reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			if err := readPolicyAnswer(br, benchWant(i%len(reqs))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// readPolicyAnswer reads an answer and checks its action's first word.
func readPolicyAnswer(br *bufio.Reader, want string) error {
	l, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(l, []byte("action="+want)) {
		return fmt.Errorf("answer %q, want %s", l, want)
	}
	if l, err = br.ReadSlice('\n'); err != nil || len(l) != 1 {
		return fmt.Errorf("no empty line after the answer: %q %v", l, err)
	}
	return nil
}

// BenchmarkHandlerPolicy measures the handler alone: reading a request
// from memory and answering it, with the decision line formatted.
func BenchmarkHandlerPolicy(b *testing.B) {
	h := benchHandler(b)
	reqs := benchRequests(4096)
	rd := bytes.NewReader(nil)
	br := bufio.NewReaderSize(rd, readBufSize)
	var r Request
	now := testNow
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rd.Reset(reqs[i%len(reqs)])
		br.Reset(rd)
		if err := ReadRequest(br, &r); err != nil {
			b.Fatal(err)
		}
		if a := h.Policy(&r, false, now); !strings.HasPrefix(a, benchWant(i%len(reqs))) {
			b.Fatalf("request %d: %q", i, a)
		}
		i++
	}
}

// BenchmarkLookup measures a socketmap lookup in map client, answered.
func BenchmarkLookup(b *testing.B) {
	h := benchHandler(b)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "client 10.0.%d.%d", i>>8, i&0xff)
	}
	now := testNow
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if reply := h.socketmapReply(keys[i%len(keys)], now); reply != "OK OK" {
			b.Fatal(reply)
		}
		i++
	}
}

type allowAll struct{}

func (allowAll) Rcpt(login, instance string, now time.Time) sendlimit.Exceeded {
	return sendlimit.Exceeded{}
}
