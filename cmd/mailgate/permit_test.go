package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
	"mailgate/internal/store"
)

type daemon struct {
	sock    string
	table   *relay.Table
	limiter *sendlimit.Limiter
}

// startDaemon serves the admin API with relay permits and sending limits
// on a unix socket, as `mailgate serve` does.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := sendlimit.DefaultConfig()
	cfg.Default = sendlimit.Limits{MessagesPerHour: 2, RecipientsPerDay: 100}
	d := &daemon{sock: filepath.Join(t.TempDir(), "admin.sock"), table: relay.New(relay.DefaultConfig()), limiter: sendlimit.New(cfg)}
	idx := rules.NewIndex()
	srv := api.NewServer(api.NewRulebook(st, idx, nil), nil, policy.New(idx, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "").
		WithRelay(api.NewPermitbook(st, d.table), func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
			return d.table.Login(login, svc, door, addr, now)
		}).
		WithLimits(d.limiter)
	ln, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ConnContext: api.ConnContext}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return d
}

// mg runs a mailgate command against d and returns its output.
func (d *daemon) mg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(args, "--socket", d.sock), &out, &errOut)
	return out.String(), err
}

func TestPermitCommands(t *testing.T) {
	d := startDaemon(t)
	out, err := d.mg(t, "permit", "add", "--ip", "203.0.113.7", "--for", "2h", "--comment", "hotel wifi")
	if err != nil || !strings.HasPrefix(out, "added relay permit: 203.0.113.7 (manual by ") || !strings.HasSuffix(out, "), 2h0m0s left: hotel wifi\n") {
		t.Fatalf("permit add: %q %v", out, err)
	}
	out, err = d.mg(t, "permit", "add", "--ip", "2001:db8::5", "--json")
	var p api.PermitJSON
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.IP != "2001:db8::/64" || p.Remaining != "30m0s" || p.Door != "manual" {
		t.Fatalf("permit add --json: %q %v", out, err)
	}
	now := time.Now()
	for _, who := range []string{"bob@example.com", "carol@example.com", "dave@example.com"} {
		d.table.Login(who, rules.IMAP, "dovecot", netip.MustParseAddr("192.0.2.80"), now)
	}
	out, err = d.mg(t, "permit", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "IP ACCOUNT SERVICE LEFT LOGINS SHARED DOOR/BY COMMENT" {
		t.Fatalf("permit list:\n%s", out)
	}
	var nat, hotel string
	for _, l := range lines[1:] {
		switch strings.Fields(l)[0] {
		case "192.0.2.80":
			nat = l
		case "203.0.113.7":
			hotel = l
		}
	}
	if f := strings.Fields(nat); len(f) < 10 || f[1] != "dave@example.com" || f[2] != "imap" || f[4] != "3" ||
		!strings.Contains(nat, " yes: dave@example.com, carol@example.com, bob@example.com  dovecot") {
		t.Errorf("shared row: %q", nat)
	}
	if f := strings.Fields(hotel); len(f) < 8 || f[1] != "-" || f[2] != "-" || f[4] != "0" || f[5] != "no" || f[6] != "manual" ||
		!strings.HasSuffix(hotel, "hotel wifi") {
		t.Errorf("manual row: %q", hotel)
	}
	out, err = d.mg(t, "permit", "list", "--json")
	var ps []api.PermitJSON
	if err != nil || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 3 {
		t.Fatalf("permit list --json: %q %v", out, err)
	}

	out, err = d.mg(t, "permit", "rm", "--ip", "2001:db8::99")
	if err != nil || !strings.HasPrefix(out, "withdrew relay permit: 2001:db8::/64 (manual by ") {
		t.Fatalf("permit rm: %q %v", out, err)
	}
	_, err = d.mg(t, "permit", "rm", "--ip", "2001:db8::99")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "permit rm: no relay permit covers 2001:db8::99") {
		t.Fatalf("permit rm twice: %v", err)
	}
	out, err = d.mg(t, "permit", "rm", "192.0.2.80", "--json")
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.IP != "192.0.2.80" || p.Account != "dave@example.com" {
		t.Fatalf("permit rm ADDR --json: %q %v", out, err)
	}
	if _, ok := d.table.Check(netip.MustParseAddr("192.0.2.80"), time.Now()); ok {
		t.Error("the permit is still there")
	}
	_, err = d.mg(t, "permit", "add", "--ip", "127.0.0.5")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "never gets relay permits") {
		t.Errorf("permit for loopback: %v", err)
	}
}

func TestLimitCommand(t *testing.T) {
	d := startDaemon(t)
	at := time.Now().Add(-time.Minute)
	for i, inst := range []string{"m1", "m1", "m2", "m3"} {
		d.limiter.Rcpt("spammer@x.test", inst, at.Add(time.Duration(i)*time.Second))
	}
	d.limiter.Rcpt("alice@x.test", "a1", at)
	out, err := d.mg(t, "limit", "list")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"LOGIN MSG/H MSG/D RCPT/H RCPT/D OVER REFUSED",
		"spammer@x.test 2/2 2/- 3/- 3/100 messages_per_hour 1",
		"alice@x.test 1/2 1/- 1/- 1/100 - 0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("limit list:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	out, err = d.mg(t, "limit", "list", "--over", "--json")
	var us []api.UsageJSON
	if err != nil || json.Unmarshal([]byte(out), &us) != nil || len(us) != 1 || us[0].Login != "spammer@x.test" || us[0].Refused != 1 {
		t.Fatalf("limit list --over --json: %q %v", out, err)
	}
}

// An empty listing is [] in JSON, not null.
func TestEmptyListsJSON(t *testing.T) {
	d := startDaemon(t)
	for _, args := range [][]string{{"permit", "list", "--json"}, {"limit", "list", "--json"}, {"limit", "list", "--json", "--over"}} {
		if out, err := d.mg(t, args...); err != nil || strings.TrimSpace(out) != "[]" {
			t.Errorf("%v: %q %v", args, out, err)
		}
	}
}

func TestPermitUsageErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"permit"}, "permit needs a subcommand"},
		{[]string{"permit", "zap"}, `unknown command "permit zap"`},
		{[]string{"permit", "add"}, "permit add: --ip is required"},
		{[]string{"permit", "add", "--ip", "nope"}, `permit add: --ip: "nope" is not an IP address`},
		{[]string{"permit", "add", "--ip", "none"}, "permit add: --ip: none is not an address"},
		{[]string{"permit", "add", "--ip", "10.0.0.1/8"}, "did you mean 10.0.0.0/8"},
		{[]string{"permit", "add", "--ip", "10.0.0.1", "--for", "400d"}, "permit add: --for:"},
		{[]string{"permit", "add", "--ip", "10.0.0.1", "extra"}, `unexpected argument "extra"`},
		{[]string{"permit", "rm"}, "permit rm: --ip is required"},
		{[]string{"permit", "rm", "10.0.0.1", "10.0.0.2"}, `unexpected argument "10.0.0.1"`},
		{[]string{"permit", "list", "x"}, `unexpected argument "x"`},
		{[]string{"limit"}, "limit needs a subcommand"},
		{[]string{"limit", "list", "x"}, `unexpected argument "x"`},
		{[]string{"limit", "list", "--bogus"}, "unknown flag --bogus"},
		{[]string{"hook"}, "hook needs a subcommand"},
		{[]string{"hook", "prelogin"}, `unknown command "hook prelogin"`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(c.args, "--socket", sock), &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mailgate %s: got %v, want a usage error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
