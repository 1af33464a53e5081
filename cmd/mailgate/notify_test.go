package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/geoip"
	"mailgate/internal/geoip/geoiptest"
	"mailgate/internal/notify"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
	"mailgate/internal/store"
)

// spyTarget keeps what the notifier delivers (the far edge: the real
// receivers are in internal/notify's and test/'s tests).
type spyTarget struct {
	mu  sync.Mutex
	got []notify.Event
}

func (s *spyTarget) Name() string              { return "spy" }
func (s *spyTarget) Wants(notify.Kind) bool    { return true }
func (s *spyTarget) QueueLen() int             { return 100 }
func (s *spyTarget) Retry() notify.RetryPolicy { return notify.RetryPolicy{} }
func (s *spyTarget) Deliver(_ context.Context, e *notify.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, *e)
	return nil
}

func (s *spyTarget) take() []notify.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

// testNotifier is a notifier over the real tracker and engine (with a
// country lookup: 192.0.2.0/24 is DE, 198.51.100.0/24 BR), started at
// now, every event on and unthrottled, delivering to spy.
func testNotifier(t *testing.T, spy *spyTarget, now time.Time) (*notifier, *policy.Engine) {
	t.Helper()
	ac := abuse.DefaultConfig()
	ac.SurgeEnabled = true
	tracker := abuse.New(ac)
	geo := func(a netip.Addr) (string, policy.CountryKind) {
		switch {
		case netip.MustParsePrefix("192.0.2.0/24").Contains(a):
			return "DE", policy.CountryFound
		case netip.MustParsePrefix("198.51.100.0/24").Contains(a):
			return "BR", policy.CountryFound
		}
		return "", policy.CountryUnknown
	}
	engine := policy.New(rules.NewIndex(), nil).WithAbuse(tracker, true, time.Minute, time.Second).WithCountries(geo, policy.CountryPolicy{})
	cfg := config.Default()
	cfg.Notifications.NewCountryLearning = 24 * time.Hour
	nc, err := notifyConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range nc.Events {
		e.Every = 0
		nc.Events[k] = e
	}
	nc.Targets = []notify.Target{spy}
	x := &notifier{n: notify.New(nc, nil), tracker: tracker, engine: engine, started: now}
	x.apply(&cfg, nc)
	return x, engine
}

// login is what serve's onReport does for a successful login.
func login(x *notifier, engine *policy.Engine, user, ip string, now time.Time) {
	a := &policy.Attempt{Login: user, Client: netip.MustParseAddr(ip), Service: rules.IMAP, Door: "dovecot"}
	x.success(a, now)
	engine.Report(a, true, now)
}

// TestNotifyNewCountry: an account's first country is learnt, not
// reported; nothing is reported within new_country_learning of the
// start; after it, a login from another country is, and one from a
// usual country is not.
func TestNotifyNewCountry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spy := &spyTarget{}
		start := time.Now()
		x, engine := testNotifier(t, spy, start)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go x.n.Run(ctx)

		login(x, engine, "alice@example.com", "192.0.2.7", start)
		login(x, engine, "alice@example.com", "198.51.100.9", start.Add(time.Hour)) // learning
		synctest.Wait()
		if got := spy.take(); len(got) != 0 {
			t.Fatalf("reported during learning: %+v", got)
		}
		later := start.Add(25 * time.Hour)
		login(x, engine, "bob@example.com", "198.51.100.9", later)   // bob's first login
		login(x, engine, "alice@example.com", "192.0.2.8", later)    // usual
		login(x, engine, "alice@example.com", "198.51.100.9", later) // BR was learnt during learning
		login(x, engine, "bob@example.com", "192.0.2.7", later.Add(time.Minute))
		synctest.Wait()
		got := spy.take()
		if len(got) != 1 || got[0].Kind != notify.NewCountry || got[0].Login != "bob@example.com" || got[0].Country != "DE" ||
			got[0].Addr != netip.MustParseAddr("192.0.2.7") || got[0].Service != "imap" {
			t.Fatalf("got %+v, want one new_country for bob from DE", got)
		}
	})
}

// TestNotifyLoginBanned: a login ban made by failures is reported with
// the last address and its country; an address ban is not.
func TestNotifyLoginBanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spy := &spyTarget{}
		now := time.Now()
		x, engine := testNotifier(t, spy, now)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go x.n.Run(ctx)
		for i, ip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
			a := &policy.Attempt{Login: "carol@example.com", Client: netip.MustParseAddr(ip), Service: rules.POP3, Door: "dovecot"}
			x.bans(engine.Report(a, false, now.Add(time.Duration(i)*time.Second)), a, now)
		}
		for i := range 5 {
			a := &policy.Attempt{Login: "u" + string(rune('a'+i)), Client: netip.MustParseAddr("192.0.2.99"), Service: rules.IMAP}
			x.bans(engine.Report(a, false, now), a, now)
		}
		synctest.Wait()
		got := spy.take()
		if len(got) != 1 || got[0].Kind != notify.LoginBanned || got[0].Login != "carol@example.com" || got[0].Country != "BR" ||
			got[0].Addr != netip.MustParseAddr("198.51.100.3") || got[0].Until.IsZero() {
			t.Fatalf("got %+v, want one login_banned for carol", got)
		}
	})
}

// TestNotifySendLimitAndHealth: the Postfix door's limiter reports a
// sender over its limit; firewall and DNSBL failures and a stale GeoIP
// database are reported.
func TestNotifySendLimitAndHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spy := &spyTarget{}
		now := time.Now()
		x, _ := testNotifier(t, spy, now)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go x.n.Run(ctx)

		lim := x.limiter(sendlimit.New(sendlimit.Config{Default: sendlimit.Limits{MessagesPerHour: 1}, MaxAccounts: 10}))
		for i := range 3 {
			lim.Rcpt("dave@example.com", "q"+string(rune('0'+i)), now)
		}
		x.firewallFailed("re-asserting the sets", errors.New("netlink: operation not permitted"), now)
		x.dnsblFailed("zen.example", "127.0.0.2 is not listed", now)

		db := filepath.Join(t.TempDir(), "c.mmdb")
		if err := geoiptest.WriteMMDB(db, map[string]string{"192.0.2.0/24": "DE"}, geoiptest.ShapeMaxMind); err != nil {
			t.Fatal(err)
		}
		loc, err := geoip.NewLocator(db, geoip.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer loc.Close()
		built := loc.Info().Built
		x.checkGeoIP(loc, built.Add(29*24*time.Hour)) // within geoip_max_age (30 days)
		x.checkGeoIP(loc, built.Add(31*24*time.Hour))
		synctest.Wait()

		var kinds []string
		for _, e := range spy.take() {
			kinds = append(kinds, string(e.Kind)+":"+e.Subject+e.Login+":"+e.Detail)
		}
		want := []string{
			"send_limit:dave@example.com:messages_per_hour 1",
			"send_limit:dave@example.com:messages_per_hour 1",
			"firewall_failed:firewall:re-asserting the sets: netlink: operation not permitted",
			"dnsbl_stale:zen.example:127.0.0.2 is not listed",
		}
		if len(kinds) != 5 || strings.Join(kinds[:4], "\n") != strings.Join(want, "\n") || !strings.HasPrefix(kinds[4], "geoip_stale:"+db) {
			t.Fatalf("got\n%s\nwant\n%s\nand geoip_stale", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestNotifyTestCommand: 'mailgate notify test' posts a signed test event
// to the webhook of the config file and reports a target that fails.
func TestNotifyTestCommand(t *testing.T) {
	const key = "notify-test-command-key-0123456789"
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !notify.Verify([]byte(key), r.Header.Get(notify.HeaderTimestamp), body, r.Header.Get(notify.HeaderSignature), time.Now(), time.Minute) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got = append(got, r.Header.Get(notify.HeaderEvent))
	}))
	defer srv.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "hook.key")
	os.WriteFile(keyFile, []byte(key), 0o600)
	cfgFile := filepath.Join(dir, "mailgate.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
[store]
path = %q
[[notify]]
name = "hook"
kind = "webhook"
url = %q
secret_file = %q
[[notify]]
name = "down"
kind = "alertmanager"
url = "http://127.0.0.1:9/api/v2/alerts"
`, filepath.Join(dir, "m.db"), srv.URL, keyFile)), 0o600)

	var out bytes.Buffer
	err := cmdNotifyTest(context.Background(), flag.NewFlagSet("notify test", flag.ContinueOnError), []string{"--config", cfgFile}, &out)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 targets failed") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(out.String(), "hook: ok") || !strings.Contains(out.String(), "down: FAILED") {
		t.Errorf("output:\n%s", out.String())
	}
	if len(got) != 1 || got[0] != "test" {
		t.Errorf("the receiver got %q", got)
	}
	out.Reset()
	if err := cmdNotifyTest(context.Background(), flag.NewFlagSet("notify test", flag.ContinueOnError), []string{"--config", cfgFile, "--target", "hook"}, &out); err != nil {
		t.Errorf("--target hook: %v\n%s", err, out.String())
	}
}

// TestNotifySharedPermit: a permit on an address that shared_logins
// accounts logged in from is reported, with the accounts, at each
// permit on it (every is 0 here; the rate per network is notify's own
// test); a permit on an address of one account is not.
func TestNotifySharedPermit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spy := &spyTarget{}
		now := time.Now()
		x, _ := testNotifier(t, spy, now)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go x.n.Run(ctx)
		st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rc := relay.DefaultConfig()
		rc.SharedLogins, rc.SharedWindow = 3, time.Hour
		grants := newPermits(relay.New(rc), st, policy.NewDecisionLog(io.Discard), slog.New(slog.DiscardHandler))
		onLogin := func(login, ip string) {
			addr := netip.MustParseAddr(ip)
			p, o := grants.login(login, rules.IMAP, addr, "dovecot", now)
			x.permit(grants, p, o, login, rules.IMAP, addr, now)
		}
		onLogin("solo@example.com", "192.0.2.50")
		onLogin("solo@example.com", "192.0.2.50")
		for _, u := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
			onLogin(u, "198.51.100.77")
		}
		synctest.Wait()
		got := spy.take()
		if len(got) != 2 || got[0].Kind != notify.SharedPermit || got[0].Prefix != netip.MustParsePrefix("198.51.100.77/32") ||
			len(got[0].Accounts) != 3 || got[0].Login != "c@example.com" || len(got[1].Accounts) != 4 {
			t.Fatalf("got %+v, want shared_permit for 198.51.100.77 at the 3rd and 4th account", got)
		}
	})
}
