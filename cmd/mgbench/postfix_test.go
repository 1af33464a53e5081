package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/postfix"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// permitsFor gives every address in one network a permit.
type permitsFor netip.Prefix

func (p permitsFor) Check(addr netip.Addr, now time.Time) (relay.Permit, bool) {
	if netip.Prefix(p).Contains(addr) {
		return relay.Permit{Prefix: netip.PrefixFrom(addr, 32), Login: "alice@example.test", Expires: now.Add(time.Minute)}, true
	}
	return relay.Permit{}, false
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startPolicyDoor serves mailgate's Postfix policy door in process:
// permits for 10.0.0.0/17 (about half of the 65536 addresses the tests
// use), user0@example.test refused from everywhere.
func startPolicyDoor(t *testing.T, network, addr string) (*countingListener, string) {
	t.Helper()
	idx := rules.NewIndex()
	r := rules.Rule{ID: 1, Account: "user0@example.test", Service: rules.SMTP, Action: rules.Deny}
	if err := r.SetMatch("0.0.0.0/0"); err != nil {
		t.Fatal(err)
	}
	idx.Add(&r)
	h := postfix.NewHandler(postfix.DefaultConfig(), policy.New(idx, nil), permitsFor(netip.MustParsePrefix("10.0.0.0/17")), nil, nil, nil)
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	s := postfix.NewServer(h, nil)
	done := make(chan error, 1)
	go func() { done <- s.ServePolicy(cl, false) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("ServePolicy: %v", err)
		}
	})
	if network == "unix" {
		return cl, "unix:" + addr
	}
	return cl, ln.Addr().String()
}

func postfixCfg(t *testing.T, addr string) *postfixConfig {
	t.Helper()
	network, dial, err := parsePostfixAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	return &postfixConfig{network: network, addr: dial, concurrency: 4, duration: 300 * time.Millisecond,
		timeout: 5 * time.Second, logins: 10, addresses: 1 << 16}
}

// The load tool against mailgate's door: persistent connections (one per
// worker), and the answers the door gives for each kind of request.
func TestPostfixLoadAgainstDoor(t *testing.T) {
	ln, addr := startPolicyDoor(t, "tcp", "127.0.0.1:0")
	for _, tc := range []struct {
		sasl, relay bool
		check       func(r *postfixResult) bool
	}{
		{false, false, func(r *postfixResult) bool { return r.Answers[ansDunno] == r.Requests }},
		// About half the addresses have a permit.
		{false, true, func(r *postfixResult) bool {
			return r.Answers[ansOK]+r.Answers[ansDunno] == r.Requests && r.Answers[ansOK] > r.Requests/4 && r.Answers[ansDunno] > r.Requests/4
		}},
		// One login in ten is refused.
		{true, false, func(r *postfixResult) bool {
			return r.Answers[ansReject]+r.Answers[ansDunno] == r.Requests && r.Answers[ansReject] > 0 && r.Answers[ansDunno] > r.Answers[ansReject]
		}},
		{true, true, func(r *postfixResult) bool {
			return r.Answers[ansOK] > 0 && r.Answers[ansReject] > 0 && r.Answers[ansDunno] > 0
		}},
	} {
		before := ln.n.Load()
		cfg := postfixCfg(t, addr)
		cfg.sasl, cfg.relaycheck = tc.sasl, tc.relay
		cfg.warmup = 50 * time.Millisecond
		res, err := runPostfixLoad(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d requests, %.0f/s, answers %v, p50 %v p99 %v", cfg.kind(), res.Requests, res.rps(), res.Answers,
			res.Hist.percentile(0.5), res.Hist.percentile(0.99))
		if res.Requests == 0 || res.Errors != 0 || !tc.check(res) {
			t.Errorf("%s: requests %d answers %v errors %d (%s)", cfg.kind(), res.Requests, res.Answers, res.Errors, res.FirstError)
		}
		if n := ln.n.Load() - before; n != int64(cfg.concurrency) {
			t.Errorf("%s: %d connections for %d workers; want one each", cfg.kind(), n, cfg.concurrency)
		}
	}
}

// The requests are what Postfix sends, read by mailgate's own parser:
// 29 attributes, relay checks and logins alternating, addresses varying.
func TestAppendPolicyRequest(t *testing.T) {
	cfg := &postfixConfig{logins: 3, addresses: 1<<24 - 2, sasl: true, relaycheck: true}
	var b []byte
	seenAddr := map[string]bool{}
	for seq := range uint64(6) {
		b = appendPolicyRequest(b[:0], cfg, seq)
		r := bufio.NewReader(bytes.NewReader(b))
		var req postfix.Request
		if err := postfix.ReadRequest(r, &req); err != nil {
			t.Fatalf("seq %d: %v\n%s", seq, err, b)
		}
		if req.Attributes != 29 || req.Request != "smtpd_access_policy" || req.ProtocolState != "RCPT" || r.Buffered() != 0 {
			t.Fatalf("seq %d: %+v", seq, req)
		}
		a, err := netip.ParseAddr(req.ClientAddress)
		if err != nil || !netip.MustParsePrefix("10.0.0.0/8").Contains(a) {
			t.Fatalf("seq %d: client %q", seq, req.ClientAddress)
		}
		seenAddr[req.ClientAddress] = true
		relay := seq%2 == 0
		if (req.PolicyContext == "relaycheck") != relay || (req.SASLUsername != "") == relay {
			t.Fatalf("seq %d: context %q login %q", seq, req.PolicyContext, req.SASLUsername)
		}
		if !relay && req.SASLUsername != "user"+string(rune('0'+seq/2%3))+"@example.test" {
			t.Fatalf("seq %d: login %q", seq, req.SASLUsername)
		}
	}
	if len(seenAddr) < 5 {
		t.Errorf("addresses do not vary: %v", seenAddr)
	}
}

// A server that closes instead of answering (a protocol violation) is
// counted as an io error, and the worker dials again.
func TestPostfixLoadCountsErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var k atomic.Int64 // requests, all connections together
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var r postfix.Request
					if postfix.ReadRequest(br, &r) != nil {
						return
					}
					switch k.Add(1) % 3 {
					case 1:
						return // close without an answer
					case 2:
						c.Write([]byte("garbage\n\n"))
					default:
						c.Write([]byte("action=DEFER_IF_PERMIT later\n\n"))
					}
				}
			}()
		}
	}()
	cfg := postfixCfg(t, ln.Addr().String())
	cfg.concurrency = 2
	res, err := runPostfixLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Answers[ansDefer] == 0 || res.ErrorsBy[errBody] == 0 || res.ErrorsBy[errIO] == 0 || res.Answers[ansDunno] != 0 {
		t.Fatalf("answers %v errors %v (%s)", res.Answers, res.ErrorsBy, res.FirstError)
	}
}

func TestPostfixConfigAndAddr(t *testing.T) {
	for _, bad := range []string{"192.0.2.1:10040", "example.com:10040", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "unix:"} {
		if _, _, err := parsePostfixAddr(bad); err == nil {
			t.Errorf("addr %q accepted", bad)
		}
	}
	for in, want := range map[string]string{"localhost:10040": "127.0.0.1:10040", "[::1]:1": "[::1]:1", "[::ffff:127.0.0.2]:5": "127.0.0.2:5", "unix:/run/x.sock": "/run/x.sock"} {
		if _, got, err := parsePostfixAddr(in); err != nil || got != want {
			t.Errorf("addr %q: %q %v", in, got, err)
		}
	}
	good := postfixConfig{network: "tcp", addr: "127.0.0.1:1", concurrency: 1, duration: time.Second, timeout: time.Second, logins: 1, addresses: 1}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*postfixConfig){
		func(c *postfixConfig) { c.concurrency = 0 },
		func(c *postfixConfig) { c.concurrency = maxConcurrency + 1 },
		func(c *postfixConfig) { c.duration = 0 },
		func(c *postfixConfig) { c.warmup = -1 },
		func(c *postfixConfig) { c.timeout = 101 * time.Second },
		func(c *postfixConfig) { c.logins = 0 },
		func(c *postfixConfig) { c.addresses = maxAddresses + 1 },
	} {
		c := good
		mod(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// The command line, over a unix socket, with --json.
func TestRunPostfixCommandLine(t *testing.T) {
	_, addr := startPolicyDoor(t, "unix", filepath.Join(t.TempDir(), "policy.sock"))
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"postfix", "--addr", addr, "--concurrency", "2", "--duration", "200ms", "--sasl", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res postfixJSON
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Requests == 0 || res.Errors != 0 || res.Answers["REJECT"] == 0 || res.Kind != "authenticated senders" || res.P99us <= 0 {
		t.Fatalf("%+v", res)
	}
	out.Reset()
	if err := run(context.Background(), []string{"postfix", "--addr", addr, "--concurrency", "1", "--duration", "100ms", "--relaycheck"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"relay checks", "requests/s:", "latency:     p50 ", "errors:      0 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"postfix", "--concurrency", "x"}, &out, &errOut); err == nil {
		t.Error("bad flag accepted")
	}
}
