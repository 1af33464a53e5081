package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook receiver on loopback that checks the signature
// as docs/notifications.md tells a user to, and answers the statuses in
// answers (then 200).
type receiver struct {
	secret  []byte
	answers []int

	mu     sync.Mutex
	bodies [][]byte
	bad    []string // why a request was refused
	hits   int
	got    chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits++
	if r.secret != nil && !Verify(r.secret, req.Header.Get(HeaderTimestamp), body, req.Header.Get(HeaderSignature), time.Now(), 5*time.Minute) {
		r.bad = append(r.bad, "signature "+req.Header.Get(HeaderSignature))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if len(r.answers) > 0 {
		code := r.answers[0]
		r.answers = r.answers[1:]
		w.WriteHeader(code)
		return
	}
	r.bodies = append(r.bodies, body)
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func startReceiver(t *testing.T, r *receiver) string {
	r.got = make(chan struct{}, 16)
	srv := httptest.NewServer(r) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv.URL
}

func waitGot(t *testing.T, r *receiver) {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("the receiver got nothing (hits %d, refused %q)", r.hits, r.bad)
	}
}

// TestWebhookSignedRetried: the receiver answers 500 once, then takes
// the retry, whose signature verifies over the exact body; the body is
// the documented JSON.
func TestWebhookSignedRetried(t *testing.T) {
	secret := []byte("s3cret-key-for-the-webhook-test")
	r := &receiver{secret: secret, answers: []int{500}}
	url := startReceiver(t, r)
	wh := &HTTPTarget{TargetName: "hook", Kind: Webhook, URL: url, Secret: secret, Timeout: 5 * time.Second, Queue: 10,
		Policy: RetryPolicy{Retries: 3, Backoff: time.Millisecond, Max: time.Millisecond}, Host: "mx1"}
	n := New(Config{Events: allOn(time.Hour), Targets: []Target{wh}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()

	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	n.Notify(Event{Kind: LoginBanned, Time: at, Login: "alice@example.com", Addr: netip.MustParseAddr("203.0.113.9"), Country: "BR", Service: "imap", Until: at.Add(10 * time.Minute)})
	waitGot(t, r)
	cancel()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hits != 2 || len(r.bad) != 0 {
		t.Fatalf("hits %d (want 2: a 500, then the retry), refused %q", r.hits, r.bad)
	}
	var j JSON
	if err := json.Unmarshal(r.bodies[0], &j); err != nil {
		t.Fatal(err)
	}
	if j.Event != "login_banned" || j.Login != "alice@example.com" || j.IP != "203.0.113.9" || j.Country != "BR" || j.Host != "mx1" ||
		!j.Time.Equal(at) || !j.Until.Equal(at.Add(10*time.Minute)) || !strings.Contains(j.Title, "alice@example.com") {
		t.Errorf("body %s", r.bodies[0])
	}
	if s := n.Stats().Targets[0]; s.Retries != 1 || s.Sent != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestWebhookWrongSecret: a receiver with another secret refuses (401, not
// retried: Permanent), and a tampered body does not verify.
func TestWebhookWrongSecret(t *testing.T) {
	r := &receiver{secret: []byte("the-receivers-secret")}
	url := startReceiver(t, r)
	wh := &HTTPTarget{TargetName: "hook", Kind: Webhook, URL: url, Secret: []byte("another-secret"), Timeout: 5 * time.Second,
		Policy: RetryPolicy{Retries: 3, Backoff: time.Millisecond, Max: time.Millisecond}}
	e := ban("alice", time.Now())
	err := wh.Deliver(context.Background(), &e)
	var p *Permanent
	if err == nil || !asPermanent(err, &p) {
		t.Fatalf("Deliver = %v, want a Permanent error", err)
	}
	if strings.Contains(err.Error(), "another-secret") {
		t.Errorf("the error shows the secret: %v", err)
	}
	body := []byte(`{"event":"login_banned"}`)
	ts := time.Now().Unix()
	sig := Sign([]byte("k"), ts, body)
	if !Verify([]byte("k"), itoa(int(ts)), body, sig, time.Now(), time.Minute) {
		t.Error("a good signature does not verify")
	}
	if Verify([]byte("k"), itoa(int(ts)), []byte(`{"event":"login_banned "}`), sig, time.Now(), time.Minute) {
		t.Error("a tampered body verifies")
	}
	if Verify([]byte("k"), itoa(int(ts)), body, sig, time.Now().Add(time.Hour), time.Minute) {
		t.Error("an hour-old signature verifies (replay)")
	}
}

// TestWebhookNoRedirect: a receiver that redirects does not get the
// signed body sent elsewhere.
func TestWebhookNoRedirect(t *testing.T) {
	other := &receiver{}
	otherURL := startReceiver(t, other)
	srv := httptest.NewServer(http.RedirectHandler(otherURL, http.StatusTemporaryRedirect))
	defer srv.Close()
	wh := &HTTPTarget{TargetName: "hook", Kind: Webhook, URL: srv.URL, Secret: []byte("k"), Timeout: 5 * time.Second}
	e := ban("alice", time.Now())
	if err := wh.Deliver(context.Background(), &e); err == nil {
		t.Fatal("a redirect counted as delivered")
	}
	if other.hits != 0 {
		t.Fatal("the redirect was followed")
	}
}

// TestAlertmanagerShape: the body is a JSON array of postableAlert:
// labels (alertname, severity, instance, subject), annotations (summary,
// description), startsAt and endsAt in RFC 3339; a ban's alert ends with
// the ban, others after resolve_after.
func TestAlertmanagerShape(t *testing.T) {
	r := &receiver{}
	url := startReceiver(t, r)
	am := &HTTPTarget{TargetName: "am", Kind: Alertmanager, URL: url + "/api/v2/alerts", Timeout: 5 * time.Second, Host: "mx1", ResolveIn: time.Hour}
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for _, e := range []Event{
		{Kind: LoginBanned, Time: at, Login: "alice@example.com", Addr: netip.MustParseAddr("203.0.113.9"), Until: at.Add(10 * time.Minute)},
		{Kind: FirewallFailed, Time: at, Subject: "firewall", Detail: "netlink: operation not permitted"},
	} {
		if err := am.Deliver(context.Background(), &e); err != nil {
			t.Fatal(err)
		}
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(r.bodies[0], &raw); err != nil || len(raw) != 1 {
		t.Fatalf("body %s: %v", r.bodies[0], err)
	}
	for _, k := range []string{"labels", "annotations", "startsAt", "endsAt"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("no %q in %s", k, r.bodies[0])
		}
	}
	var alerts [2][]AlertJSON
	for i := range alerts {
		if err := json.Unmarshal(r.bodies[i], &alerts[i]); err != nil {
			t.Fatal(err)
		}
	}
	a := alerts[0][0]
	if a.Labels["alertname"] != "MailgateLoginBanned" || a.Labels["severity"] != "warning" || a.Labels["instance"] != "mx1" ||
		a.Labels["login"] != "alice@example.com" || a.Annotations["summary"] == "" || a.Annotations["description"] == "" ||
		!a.StartsAt.Equal(at) || !a.EndsAt.Equal(at.Add(10*time.Minute)) {
		t.Errorf("ban alert %+v", a)
	}
	f := alerts[1][0]
	if f.Labels["alertname"] != "MailgateFirewallFailed" || f.Labels["severity"] != "critical" || !f.EndsAt.Equal(at.Add(time.Hour)) {
		t.Errorf("firewall alert %+v", f)
	}
	if !strings.Contains(string(r.bodies[1]), `"startsAt":"2026-12-05T10:00:00Z"`) {
		t.Errorf("startsAt is not RFC 3339 UTC: %s", r.bodies[1])
	}
}

// TestRetryPolicyWait: the backoff doubles and is capped.
func TestRetryPolicyWait(t *testing.T) {
	p := RetryPolicy{Retries: 10, Backoff: time.Second, Max: 30 * time.Second}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if got := p.Wait(i); got != w*time.Second {
			t.Errorf("Wait(%d) = %v, want %v", i, got, w*time.Second)
		}
	}
}

// TestWebhookRateAndQueue: against a real receiver on loopback, a second
// event of the same account within every is not posted, and while the
// receiver hangs the target's queue holds `queue` events and drops the
// rest (counted), without Notify ever waiting.
func TestWebhookRateAndQueue(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{}, 1)
	var mu sync.Mutex
	var logins []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var j JSON
		json.NewDecoder(r.Body).Decode(&j)
		mu.Lock()
		logins = append(logins, j.Login)
		mu.Unlock()
		select {
		case first <- struct{}{}:
		default:
		}
		<-release
	}))
	defer srv.Close()
	wh := &HTTPTarget{TargetName: "hook", Kind: Webhook, URL: srv.URL, Secret: []byte("k"), Timeout: time.Minute, Queue: 2}
	n := New(Config{Events: allOn(time.Hour), Targets: []Target{wh}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()

	now := time.Now()
	n.Notify(ban("alice", now))
	select {
	case <-first:
	case <-time.After(10 * time.Second): // a bound on a hang
		t.Fatal("the receiver got nothing")
	}
	n.Notify(ban("alice", now.Add(time.Second))) // same subject within every
	for i := range 5 {
		n.Notify(ban("u"+itoa(i), now))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := n.Stats()
		if s.RateSubject == 1 && s.Targets[0].Queued+int(s.Targets[0].QueueFull) == 5 {
			if s.Targets[0].Queued != 2 || s.Targets[0].QueueFull != 3 {
				t.Fatalf("queued %d, dropped %d; want 2, 3", s.Targets[0].Queued, s.Targets[0].QueueFull)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s)
		}
		time.Sleep(10 * time.Millisecond) // polling the dispatcher's counters
	}
	cancel()
	close(release)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(logins) == 0 || logins[0] != "alice" {
		t.Errorf("posted %q", logins)
	}
	for _, l := range logins[1:] {
		if l == "alice" {
			t.Errorf("alice posted twice within every: %q", logins)
		}
	}
}
