package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

func scrape(m *Metrics) string {
	var b bytes.Buffer
	m.WritePrometheus(&b)
	return b.String()
}

func TestCounts(t *testing.T) {
	m := New()
	now := time.Unix(1_800_000_000, 0)
	a := policy.Attempt{Door: "dovecot", Service: rules.ProtocolService("imap"), Login: "alice@example.test"}
	allow := policy.Verdict{Action: policy.Allow, Reason: policy.ReasonDefault}
	deny := policy.Verdict{Action: policy.Deny, Reason: policy.ReasonAccountDeny}
	m.Verdict(now, &a, &allow)
	m.Verdict(now, &a, &allow)
	m.Verdict(now, &a, &deny)
	m.Result(now, &a, false)
	odd := policy.Attempt{Door: "<script>", Service: rules.OtherService}
	m.Verdict(now, &odd, &deny)
	m.Latency("postfix", 3*time.Millisecond)
	m.Error("firewall")

	out := scrape(m)
	for _, want := range []string{
		`mailgate_decisions_total{door="dovecot",service="imap",action="allow",reason="default"} 2`,
		`mailgate_decisions_total{door="dovecot",service="imap",action="deny",reason="account_deny"} 1`,
		`mailgate_decisions_total{door="other",service="other",action="deny",reason="account_deny"} 1`,
		`mailgate_login_results_total{door="dovecot",service="imap",result="failure"} 1`,
		`mailgate_request_duration_seconds_count{door="postfix"} 1`,
		`mailgate_request_duration_seconds_bucket{door="postfix",le="0.005"} 1`,
		`mailgate_errors_total{component="firewall"} 1`,
		`mailgate_errors_total{component="store"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	// Never a login or an address as a label value.
	if strings.Contains(out, "alice") || strings.Contains(out, "script") {
		t.Errorf("a login or an unknown door became a label:\n%s", out)
	}
}

func TestWindow(t *testing.T) {
	m := New()
	t0 := time.Unix(1_800_000_000, 0)
	a := policy.Attempt{Door: "nginx"}
	deny := policy.Verdict{Action: policy.Deny}
	allow := policy.Verdict{Action: policy.Allow}
	m.Verdict(t0, &a, &deny)
	m.Verdict(t0.Add(30*time.Second), &a, &allow)
	if got, want := m.Window("nginx", t0.Add(30*time.Second)), (Counts{2, 1, 2, 1}); got != want {
		t.Errorf("at +30s: %+v, want %+v", got, want)
	}
	if got, want := m.Window("nginx", t0.Add(100*time.Second)), (Counts{0, 0, 2, 1}); got != want {
		t.Errorf("at +100s: %+v, want %+v", got, want)
	}
	if got, want := m.Window("nginx", t0.Add(2*time.Hour)), (Counts{}); got != want {
		t.Errorf("two hours on: %+v, want nothing", got)
	}
	// A slot reused an hour later starts from zero.
	m.Verdict(t0.Add(time.Hour), &a, &allow)
	if got, want := m.Window("nginx", t0.Add(time.Hour)), (Counts{1, 0, 1, 0}); got != want {
		t.Errorf("an hour on: %+v, want %+v", got, want)
	}
	if got := m.Window("dovecot", t0); got != (Counts{}) {
		t.Errorf("another door: %+v", got)
	}
}

func TestVerdictAllocs(t *testing.T) {
	m := New()
	now := time.Now()
	a := policy.Attempt{Door: "dovecot", Service: rules.ProtocolService("imap")}
	v := policy.Verdict{Action: policy.Allow}
	m.Verdict(now, &a, &v)
	if n := testing.AllocsPerRun(100, func() {
		m.Verdict(now, &a, &v)
		m.Result(now, &a, true)
		m.Latency("dovecot", time.Millisecond)
	}); n != 0 {
		t.Errorf("a counted decision allocates %v times", n)
	}
}

// BenchmarkVerdict is what the metrics add to every decision: a counter,
// the door's window, and its latency histogram.
func BenchmarkVerdict(b *testing.B) {
	m := New()
	now := time.Now()
	a := policy.Attempt{Door: "dovecot", Service: rules.ProtocolService("imap")}
	v := policy.Verdict{Action: policy.Allow}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Verdict(now, &a, &v)
			m.Latency("dovecot", time.Millisecond)
		}
	})
}

func BenchmarkParts(b *testing.B) {
	m := New()
	now := time.Now()
	a := policy.Attempt{Door: "dovecot", Service: rules.ProtocolService("imap")}
	v := policy.Verdict{Action: policy.Allow}
	b.Run("counter+window", func(b *testing.B) {
		for b.Loop() {
			m.Verdict(now, &a, &v)
		}
	})
	b.Run("histogram", func(b *testing.B) {
		for b.Loop() {
			m.Latency("dovecot", time.Millisecond)
		}
	})
}
