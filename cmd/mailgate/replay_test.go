package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/maillog/loggen"
	"mailgate/internal/replay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// runReplayCmd runs 'mailgate replay args...' with cfg as the config
// file and decodes its --json report.
func runReplayCmd(t *testing.T, cfg string, args ...string) (*replay.Report, error) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "mailgate.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	err := cmdReplay(context.Background(), fs, append([]string{"--config", cfgPath, "--json"}, args...), &out)
	if err != nil {
		return nil, err
	}
	var rep replay.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v in %s", err, out.Bytes())
	}
	return &rep, nil
}

// A replay of a mail log counts every login and every failed password
// check the log holds (loggen knows how many it wrote); with bans off
// nothing is refused, with the defaults the attackers are banned and
// stopped.
func TestReplayLogCountsEveryCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loggen.Generate(f, 30000, 1)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	failures := int64(st.DovecotChecks + st.PostfixFailures)
	logins := int64(st.DovecotLogins + st.PostfixLogins)

	rep, err := runReplayCmd(t, "bruteforce.enabled = false\n", "--log", path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Attackers.Attempts != failures || rep.Legitimate.Attempts != logins {
		t.Errorf("replayed %d failed checks and %d logins; the log has %d and %d (%+v)", rep.Attackers.Attempts, rep.Legitimate.Attempts, failures, logins, st)
	}
	if rep.Verdicts["deny"] != 0 || rep.Bans.Total != 0 || rep.Attackers.Reached != failures {
		t.Errorf("bans off: %d refused, %d bans, %d of %d failures reached the check", rep.Verdicts["deny"], rep.Bans.Total, rep.Attackers.Reached, failures)
	}
	if rep.Input.Lines != int64(st.Lines) || rep.Input.Files != 1 {
		t.Errorf("input %+v, want %d lines", rep.Input, st.Lines)
	}

	rep, err = runReplayCmd(t, "", "--log", path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Input.Attempts != failures+logins {
		t.Errorf("defaults: %d attempts, want %d", rep.Input.Attempts, failures+logins)
	}
	if rep.Bans.Total == 0 || rep.Attackers.Stopped == 0 || rep.Attackers.Reached >= failures {
		t.Errorf("defaults: %d bans, %d stopped, %d of %d reached the check", rep.Bans.Total, rep.Attackers.Stopped, rep.Attackers.Reached, failures)
	}
}

// --from and --to keep a window; a gzipped log is read compressed.
func TestReplayWindowAndGzip(t *testing.T) {
	var buf bytes.Buffer
	st, err := loggen.Generate(&buf, 5000, 2)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mail.log.2.gz")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(buf.Bytes())
	zw.Close()
	if err := os.WriteFile(path, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// loggen writes RFC 3164 times without a year: the file's
	// modification time gives it.
	if err := os.Chtimes(path, time.Time{}, loggen.Start.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	all, err := runReplayCmd(t, "", "--log", path)
	if err != nil {
		t.Fatal(err)
	}
	if all.Input.Lines != int64(st.Lines) || all.Input.Events == 0 || all.Input.First.Sub(loggen.Start).Abs() > 14*time.Hour { // the log is in local time
		t.Fatalf("gzip: %+v", all.Input)
	}
	mid := all.Input.First.Add(all.Input.Last.Sub(all.Input.First) / 2).Truncate(time.Second)
	first, err := runReplayCmd(t, "", "--log", path, "--to", mid.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	second, err := runReplayCmd(t, "", "--log", path, "--from", mid.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	if first.Input.Events+second.Input.Events != all.Input.Events || first.Input.Events == 0 || second.Input.Events == 0 {
		t.Errorf("--to %d + --from %d events, want %d", first.Input.Events, second.Input.Events, all.Input.Events)
	}
	if !first.Input.Last.Before(mid) || second.Input.First.Before(mid) || second.Input.OutOfRange != first.Input.Events {
		t.Errorf("windows: %+v, %+v around %v", first.Input, second.Input, mid)
	}
}

// --store adds the stored rules, read without writing the store.
func TestReplayStoreReadOnly(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "mailgate.db")
	st, err := store.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	// alice may log in only from the office.
	_, err = st.AddRules(context.Background(), time.Now(), "test", []rules.Rule{{Scope: rules.ScopeAccount, Account: "alice@example.org", Action: rules.Allow, Match: netip.MustParsePrefix("192.0.2.0/24")}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "events.jsonl")
	os.WriteFile(events, []byte(`{"time":"2026-12-01T08:00:00Z","service":"imap","login":"alice@example.org","address":"198.51.100.1","result":"success"}
{"time":"2026-12-01T08:00:01Z","service":"imap","login":"alice@example.org","address":"192.0.2.7","result":"success"}
`), 0o600)
	sum := func() string {
		h := sha256.New()
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			fi, _ := e.Info()
			fmt.Fprintf(h, "%s %x %v\n", e.Name(), sha256.Sum256(b), fi.ModTime())
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	before := sum()
	cfg := fmt.Sprintf("[store]\npath = %q\n", db)

	rep, err := runReplayCmd(t, cfg, "--events", events)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Legitimate.Refused != 0 {
		t.Errorf("without --store: %d refused", rep.Legitimate.Refused)
	}
	rep, err = runReplayCmd(t, cfg, "--store", "--events", events)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Legitimate.Refused != 1 || rep.Reasons["not_in_allowlist"] != 1 || rep.Legitimate.List[0].Address != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("with --store: %+v", rep.Legitimate)
	}
	if after := sum(); after != before {
		t.Error("replay --store changed the store's directory")
	}
	if _, err := runReplayCmd(t, fmt.Sprintf("[store]\npath = %q\n", filepath.Join(dir, "none.db")), "--store", "--events", events); err == nil {
		t.Error("--store with a missing store: no error")
	} else if _, statErr := os.Stat(filepath.Join(dir, "none.db")); statErr == nil {
		t.Error("--store created a store")
	}
}

func TestReplayErrors(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-12-01T08:00:00Z","service":"imap","address":"192.0.2.1"}`
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	for _, tt := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{nil, "give the input", true},
		{[]string{"--log", "a", "--events", "b"}, "not both", true},
		{[]string{"--events", "x", "--from", "tuesday"}, "--from", true},
		{[]string{"--events", "x", "--from", "2026-12-02", "--to", "2026-12-01"}, "--from must be before --to", true},
		{[]string{"--events", filepath.Join(dir, "missing")}, "no such file", false},
		{[]string{"--events", dir}, "is a directory", false},
		{[]string{"--events", write("bad.jsonl", good+"\n# fine\n\n{\"time\":\"x\"}\n")}, "bad.jsonl:4: time:", false},
		{[]string{"--events", write("order.jsonl", strings.Replace(good, "08:00", "09:00", 1)+"\n"+good+"\n")}, "order.jsonl:2: time 2026-12-01T08:00:00Z is before", false},
		{[]string{"--events", write("long.jsonl", good+"\n"+strings.Repeat("x", 100<<10)+"\n")}, "long.jsonl:2: longer than 4096 bytes", false},
		{[]string{"--events", write("nul.jsonl", "\x00\x01\n")}, "nul.jsonl:1: not a JSON object", false},
		{[]string{"--events", "-", "-"}, "stdin) given twice", true},
	} {
		_, err := runReplayCmd(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, errUsage) != tt.usage {
			t.Errorf("replay %q: %v, want %q (usage %v)", tt.args, err, tt.want, tt.usage)
		}
	}
	// Several files merge in time order; positional arguments add files.
	a := write("a.jsonl", strings.Replace(good, "08:00:00", "08:00:02", 1)+"\n")
	b := write("b.jsonl", good+"\n"+strings.Replace(good, "08:00:00", "08:00:03", 1)+"\n")
	rep, err := runReplayCmd(t, "", "--events", a, b)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Input.Files != 2 || rep.Input.Events != 3 || rep.Input.OutOfOrder != 0 || rep.PasswordChecks.DecideOnly != 3 {
		t.Errorf("two files: %+v %+v", rep.Input, rep.PasswordChecks)
	}
}

// The logs the real Dovecot 2.3, Postfix 3.7 and nginx 1.22 wrote in
// internal/maillog's capture test (injection attempts included) replay
// to exactly the attempts the parser's golden files list, and a forged
// field never becomes an address the report names.
func TestReplayCapturedLogs(t *testing.T) {
	dir := "../../internal/maillog/testdata/capture"
	for _, name := range []string{"dovecot.log", "maillog", "nginx-error.log", "journal.json"} {
		t.Run(name, func(t *testing.T) {
			golden, err := os.ReadFile(filepath.Join(dir, name+".events"))
			if err != nil {
				t.Fatal(err)
			}
			var want, successes int64
			for _, l := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
				if strings.HasSuffix(l, " success") || strings.Contains(l, " success ") {
					want++
					successes++
				} else if i := strings.Index(l, " attempts="); i >= 0 {
					var n int64
					fmt.Sscanf(l[i+len(" attempts="):], "%d", &n)
					want += n
				}
			}
			args := []string{"--log", filepath.Join(dir, name)}
			if strings.HasSuffix(name, ".json") {
				args = append(args, "--journal")
			}
			if name == "nginx-error.log" {
				args = append(args, "--programs", "nginx")
			}
			// Low thresholds, so that the captured failures make bans.
			rep, err := runReplayCmd(t, "bruteforce.addr_failures = 1\nbruteforce.login_failures = 1\nbruteforce.login_min_addrs = 1\nrelay.enabled = true\n", args...)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Bans.Total == 0 {
				t.Error("no bans: the test's thresholds should ban every failing address")
			}
			if rep.Input.Attempts != want || rep.Legitimate.Attempts != successes || want == 0 {
				t.Errorf("replayed %d attempts (%d logins); the golden file lists %d (%d)", rep.Input.Attempts, rep.Legitimate.Attempts, want, successes)
			}
			out, _ := json.Marshal(rep)
			if strings.Contains(string(out), `"6.6.6.6`) || strings.Contains(string(out), `"address":"6.6.6.6"`) {
				t.Errorf("a forged address made it into the report: %s", out)
			}
			for _, b := range rep.Bans.List {
				if b.Kind == "address" && strings.HasPrefix(b.Target, "6.6.6.") {
					t.Errorf("ban of %s: a forged address", b.Target)
				}
			}
		})
	}
}

// A replay with [dnsbl] zones configured asks no DNS server: a DNSBL
// answer belongs to the live system's time (docs/replay.md), and a replay
// of last week's log must not send last week's addresses to a list.
func TestReplayAsksNoDNSBL(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	packets := make(chan string, 64)
	go func() {
		buf := make([]byte, 512)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			packets <- string(buf[:n])
		}
	}()
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	os.WriteFile(events, []byte(`{"time":"2026-12-01T08:00:00Z","service":"imap","login":"alice@example.org","address":"198.51.100.1","result":"success"}
{"time":"2026-12-01T08:00:01Z","service":"pop3","login":"bob@example.org","address":"2001:db8::1","result":"failure"}
{"time":"2026-12-01T08:00:02Z","door":"nginx","service":"imap","login":"carol@example.org","address":"203.0.113.9"}
`), 0o600)
	cfg := fmt.Sprintf("[store]\npath = %q\n\n[dnsbl]\nzones = [\"bl.example.test\"]\nresolver = %q\n",
		filepath.Join(dir, "mailgate.db"), pc.LocalAddr().String())
	rep, err := runReplayCmd(t, cfg, "--events", events)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Input.Attempts != 3 {
		t.Errorf("replayed %d attempts, want 3", rep.Input.Attempts)
	}
	// The resolver is on loopback: a query the replay sent arrives
	// before a marker sent now.
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("marker"))
	c.Close()
	n := 0
	for p := range packets {
		if p == "marker" {
			break
		}
		n++
	}
	if n != 0 {
		t.Errorf("the replay sent %d DNS queries", n)
	}
}

// nginx writes a client's login into its error.log raw, newlines
// included, so a client can write a Dovecot login line there: replay
// reads a text log for nginx alone or not for nginx (as the log door's
// files do), and a forged line never becomes a login or a permit.
func TestReplayPrograms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	log := `2026/12/05 19:09:20 [info] 20415#20415: *5 client login failed: "Login refused" while in http auth state, client: 127.0.3.24, server: 127.0.0.1:143, login: "x
Dec 05 19:09:20 mx dovecot: imap-login: Login: user=<mallory@example.test>, method=PLAIN, rip=6.6.6.6, lip=127.0.0.1, mpid=1, session=<AAAAAAAAAAAAAAAA>"
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "relay.enabled = true\n"
	rep, err := runReplayCmd(t, cfg, "--log", path, "--programs", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := json.Marshal(rep); rep.Legitimate.Attempts != 0 || strings.Contains(string(out), "6.6.6.6") {
		t.Errorf("nginx's log alone: a forged Dovecot login counted: %+v", rep)
	}
	// The default for a text log is dovecot and postfix: the forged line
	// would count there, which is why nginx's file is replayed alone.
	rep, err = runReplayCmd(t, cfg, "--log", path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Input.Attempts != 1 {
		t.Errorf("default programs: %d attempts, want the one Dovecot line", rep.Input.Attempts)
	}
	for _, bad := range []string{"nginx,dovecot", "exim", "postfix,nginx"} {
		if _, err := runReplayCmd(t, cfg, "--log", path, "--programs", bad); err == nil || !errors.Is(err, errUsage) {
			t.Errorf("--programs %s: %v, want a usage error", bad, err)
		}
	}
	if _, err := runReplayCmd(t, cfg, "--journal", "--log", path, "--programs", "nginx,dovecot"); err != nil {
		t.Errorf("--journal may mix programs: %v", err)
	}
}
