package test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"mailgate/internal/api"
	"mailgate/test/harness"
)

// TestMetricsEndToEnd runs the daemon behind a real Dovecot with the
// metrics listener on, makes allowed, refused and failed logins, and
// checks that /metrics counts exactly what the decision log says, that
// 'mailgate status --json' shows the door's counts, and that /healthz
// turns 503 while another process holds the store's write lock.
func TestMetricsEndToEnd(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	dir := harness.TempDir(t, "metrics-")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, apiKey, fmt.Sprintf("\n[metrics]\nlisten = %q\n", metricsAddr)))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{alice: alicePW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    apiKey,
		Nonce:     nonce,
	})
	const denied, good, wrong = "127.0.0.71", "127.0.0.72", "127.0.0.73"
	mg.MustCLI(t, "rule", "add", "--account", alice, "--service", "all", "--deny", "--ip", denied)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ip := netip.MustParseAddr
	if err := harness.IMAPLogin(ctx, ip(good), dc.IMAPAddr, alice, alicePW); err != nil {
		t.Fatalf("allowed login: %v", err)
	}
	if err := harness.IMAPLogin(ctx, ip(denied), dc.IMAPAddr, alice, alicePW); err == nil {
		t.Fatal("login from the denied address succeeded")
	}
	if err := harness.POP3Login(ctx, ip(wrong), dc.POP3Addr, alice, wrongPW); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	mg.WaitLogLine(t, map[string]string{"auth": "success", "ip": good})
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "account_deny", "ip": denied})
	mg.WaitLogLine(t, map[string]string{"auth": "failure", "ip": wrong})

	// The decision log's counts, in the metrics' label order.
	want := map[string]float64{}
	results := map[string]float64{}
	refusals, requests := 0, 0
	for _, l := range harness.ParseLog(mg.DecisionLog()) {
		switch {
		case l["decision"] != "":
			want[fmt.Sprintf("door=%s,service=%s,action=%s,reason=%s", l["door"], l["service"], l["decision"], l["reason"])]++
			requests++
			if l["decision"] == "deny" {
				refusals++
			}
		case l["auth"] != "":
			results[fmt.Sprintf("door=%s,service=%s,result=%s", l["door"], l["service"], l["auth"])]++
		}
	}
	if refusals == 0 || requests == refusals {
		t.Fatalf("the scenario made %d verdicts, %d refusals; want both kinds", requests, refusals)
	}

	m := scrape(t, metricsAddr)
	if got := m.family("mailgate_decisions_total", "door", "service", "action", "reason"); !equalCounts(got, want) {
		t.Errorf("mailgate_decisions_total = %v\nthe decision log says %v", got, want)
	}
	if got := m.family("mailgate_login_results_total", "door", "service", "result"); !equalCounts(got, results) {
		t.Errorf("mailgate_login_results_total = %v\nthe decision log says %v", got, results)
	}
	if n := m.value(`mailgate_request_duration_seconds_count{door="dovecot"}`); n < float64(requests) {
		t.Errorf("dovecot latency histogram counts %v requests, want at least the %d verdicts", n, requests)
	}
	for _, name := range []string{`mailgate_bans{kind="address"}`, `mailgate_store_up`, `mailgate_errors_total{component="store"}`, `go_goroutines`, `process_resident_memory_bytes`} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if m.value(`mailgate_store_up`) != 1 {
		t.Errorf("mailgate_store_up = %v, want 1", m.value(`mailgate_store_up`))
	}

	var st api.StatusJSON
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	var door *api.DoorJSON
	for i := range st.Doors {
		if st.Doors[i].Door == "dovecot" {
			door = &st.Doors[i]
		}
	}
	switch {
	case door == nil:
		t.Errorf("status --json has no dovecot door: %+v", st.Doors)
	case door.HourRequests != uint64(requests) || door.HourRefusals != uint64(refusals) || !door.Up || door.Listen != mg.DovecotAddr:
		t.Errorf("status --json dovecot door = %+v, want %d requests, %d refused, up, on %s", *door, requests, refusals, mg.DovecotAddr)
	}
	if text := mg.MustCLI(t, "status"); !strings.Contains(text, "dovecot") || !strings.Contains(text, mg.DovecotAddr) {
		t.Errorf("status does not show the dovecot door:\n%s", text)
	}

	// /healthz: ok, then 503 while another process holds the store's
	// write lock (a backup tool in a transaction, a second mailgate
	// started by hand), then ok again.
	if code, body := get(t, "http://"+metricsAddr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q, want 200", code, body)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "mailgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	// The store is checked at most once a second: the answer turns
	// within a few.
	code, body := waitHealth(t, "http://"+metricsAddr+"/healthz", http.StatusServiceUnavailable)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store") || strings.Count(body, "\n") != 1 {
		t.Errorf("/healthz with the store locked = %d %q, want 503 and one line naming the store", code, body)
	}
	resp, err := mg.AdminClient().Get("http://mailgate/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("admin socket /healthz with the store locked = %d, want 503", resp.StatusCode)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if code, body := waitHealth(t, "http://"+metricsAddr+"/healthz", http.StatusOK); code != http.StatusOK {
		t.Errorf("/healthz after the lock went = %d %q, want 200", code, body)
	}
}

// waitHealth fetches url until it answers want, for up to 10 s, and
// returns the last answer.
func waitHealth(t *testing.T, url string, want int) (int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, url)
		if code == want || time.Now().After(deadline) {
			return code, body
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// samples are a scrape: the series name with its labels → value.
type samples map[string]float64

func scrape(t *testing.T, addr string) samples {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	s := samples{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s
}

func (s samples) value(name string) float64 { return s[name] }

// family returns the series of name, keyed "l1=v1,l2=v2" in the order of
// labels; zero values are left out.
func (s samples) family(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for series, v := range s {
		if !strings.HasPrefix(series, name+"{") || v == 0 {
			continue
		}
		var key []string
		for _, l := range labels {
			_, rest, ok := strings.Cut(series, l+`="`)
			if !ok {
				continue
			}
			val, _, _ := strings.Cut(rest, `"`)
			key = append(key, l+"="+val)
		}
		out[strings.Join(key, ",")] = v
	}
	return out
}

func equalCounts(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
