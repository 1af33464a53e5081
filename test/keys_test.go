package test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// Addresses and logins of the forged-report scenario (127.0.62.0/24).
const (
	fkVictim   = "ceo@example.test"
	fkVictimPW = "Fk-Ceo-Secret-2024"
	fkGood     = "127.0.62.50" // the victim's real address
)

// TestForgedReports is issue 10's finding 1 on the daemon's defaults: no
// api_key anywhere, the store at ./mailgate.db. mailgate makes a key on
// its first start (a 0600 file beside the store) and the Dovecot door
// refuses every request without it, so a local process (a customer's PHP
// on a shared host) that POSTs forged reports to 127.0.0.1:4001 bans
// nobody and makes no address known good; the same reports with the key
// count. The real Dovecot, configured with the shipped
// etc/dovecot/95-mailgate.conf, reads the key from the file
// (auth_policy_server_api_header = </path), and the key survives a
// restart.
//
// The config sets only what keeps parallel tests apart (the admin socket,
// the door's port); everything else is the built-in default.
func TestForgedReports(t *testing.T) {
	dir := harness.TempDir(t, "fk-e2e-")
	mg := harness.StartMailgate(t, fmt.Sprintf(`
[admin]
socket = %q
[dovecot]
listen = "127.0.0.1:%d"
`, filepath.Join(dir, "admin.sock"), harness.FreePort(t)))
	// The attacker: three failures for the victim's login from two
	// addresses (a login ban), five from one address (an address ban),
	// and a success from its own address (known good for the victim).
	forge := func(auth func(*http.Request)) []int {
		var codes []int
		for i, src := range []string{"127.0.62.1", "127.0.62.2", "127.0.62.1"} {
			codes = append(codes, fkReport(t, mg, auth, fkVictim, src, fmt.Sprintf("fk-login-%d", i), false))
		}
		for i := range 5 {
			codes = append(codes, fkReport(t, mg, auth, fmt.Sprintf("user%d@example.test", i), "127.0.62.3", fmt.Sprintf("fk-addr-%d", i), false))
		}
		return append(codes, fkReport(t, mg, auth, fkVictim, "127.0.62.4", "fk-good", true))
	}
	refused := func(name string, auth func(*http.Request)) {
		for i, code := range forge(auth) {
			if code != http.StatusUnauthorized {
				t.Errorf("%s: forged report %d: HTTP %d, want 401", name, i, code)
			}
		}
	}
	refused("no key", func(*http.Request) {})
	refused("wrong key", func(r *http.Request) { r.Header.Set("X-API-Key", "not-the-key-0123456789") })
	refused("wrong basic", func(r *http.Request) { r.SetBasicAuth("dovecot", "not-the-key-0123456789") })
	refused("empty basic", func(r *http.Request) { r.SetBasicAuth("dovecot", "") })
	if bans := fkBans(t, mg); len(bans) != 0 {
		t.Fatalf("forged reports without the key made bans: %v", bans)
	}

	keyPath := filepath.Join(mg.Dir, "dovecot-api-key") // beside ./mailgate.db
	key := fkReadKey(t, keyPath)
	if want := "auth_policy_server_api_header = <" + keyPath; !strings.Contains(mg.Stderr(), want) {
		t.Errorf("mailgate's log does not tell the Dovecot line %q:\n%s", want, mg.Stderr())
	}
	if out := mg.MustCLI(t, "config", "check"); !strings.Contains(out, "auth_policy_server_api_header = <"+keyPath) {
		t.Errorf("config check does not tell where the key is:\n%s", out)
	}
	refused("key prefix", func(r *http.Request) { r.Header.Set("X-API-Key", key[:len(key)-1]) })
	refused("key and more", func(r *http.Request) { r.Header.Set("X-API-Key", key+"x") })
	refused("bearer with key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+key) })
	if bans := fkBans(t, mg); len(bans) != 0 {
		t.Fatalf("forged reports without the key made bans: %v", bans)
	}
	if e := bfExplain(t, mg, fkVictim, "127.0.62.9", "imap", ""); e.Verdict != "allow" {
		t.Errorf("after forged reports, %s from 127.0.62.9: %+v, want allow", fkVictim, e)
	}
	if lines := harness.ParseLog(mg.DecisionLog()); len(harness.Find(lines, map[string]string{"door": "dovecot"})) != 0 {
		t.Errorf("forged reports reached the decision log:\n%s", mg.DecisionLog())
	}

	// The key survives a restart, and Dovecot reads it from the file: a
	// real login is decided and reported (without the key it would be
	// refused with 401, and Dovecot would go on without mailgate).
	mg.Restart()
	if again := fkReadKey(t, keyPath); again != key {
		t.Fatalf("the key changed across a restart: %q, then %q", key, again)
	}
	// Dovecot runs the shipped snippet, pointed at this daemon and its
	// key file.
	snippet, err := os.ReadFile(filepath.Join("..", "etc", "dovecot", "95-mailgate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"http://127.0.0.1:4001/", mg.DovecotURL(),
		"</var/lib/mailgate/dovecot-api-key", "<"+keyPath,
		"CHANGE-ME-nonce", "fk-e2e-nonce-5150",
	).Replace(string(snippet))
	if strings.Count(conf, mg.DovecotURL()) != 1 || strings.Count(conf, "<"+keyPath) != 1 || strings.Contains(conf, "CHANGE-ME") {
		t.Fatalf("etc/dovecot/95-mailgate.conf changed; update this test:\n%s", conf)
	}
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users: map[string]string{fkVictim: fkVictimPW},
		Extra: conf,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr(fkGood), dc.IMAPAddr, fkVictim, fkVictimPW); err != nil {
		t.Fatalf("IMAP login through Dovecot: %v", err)
	}
	mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "dovecot", "login": fkVictim, "ip": fkGood})

	// With the key the same reports count: the attacker's success makes
	// its address known good, and the bans follow.
	withKey := func(r *http.Request) { r.Header.Set("X-API-Key", key) }
	for i, code := range forge(withKey) {
		if code != http.StatusOK {
			t.Errorf("report %d with the key: HTTP %d, want 200", i, code)
		}
	}
	bans := fkBans(t, mg)
	if !bans["login "+fkVictim] || !bans["address 127.0.62.3"] {
		t.Errorf("reports with the key: bans %v, want the login %s and the address 127.0.62.3", bans, fkVictim)
	}
	if e := bfExplain(t, mg, fkVictim, "127.0.62.4", "imap", ""); e.Verdict != "allow" {
		t.Errorf("the address a keyed success came from is not known good during the login ban: %+v", e)
	}
	if e := bfExplain(t, mg, fkVictim, "127.0.62.9", "imap", ""); e.Verdict == "allow" {
		t.Errorf("the banned login is allowed from an unknown address: %+v", e)
	}
	if strings.Contains(mg.DecisionLog(), key) || strings.Contains(mg.Stderr(), key) {
		t.Error("mailgate logged the API key")
	}
}

// TestBadKeyFile: a key file that exists but is no usable key stops the
// start with an error naming it, and config check says the same; the
// file is left as it is (a silently new key would lock Dovecot out).
func TestBadKeyFile(t *testing.T) {
	bin := harness.Mailgate(t)
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"trailing newline", "0123456789abcdef0123\n", 0o600, "ends with a line break"},
		{"world readable", "0123456789abcdef0123", 0o644, "lets other users in; run: chmod 600"},
		{"garbage", "\x00\xff", 0o600, "not a key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := harness.TempDir(t, "fk-bad-")
			keyPath := filepath.Join(dir, "dovecot-api-key")
			if err := os.WriteFile(keyPath, []byte(c.content), c.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(keyPath, c.mode)
			conf := filepath.Join(dir, "mailgate.toml")
			if err := os.WriteFile(conf, fmt.Appendf(nil, "[store]\npath = %q\n[admin]\nsocket = %q\n[dovecot]\nlisten = \"127.0.0.1:%d\"\n[postfix]\nenabled = false\n[relay]\nhook_socket = \"\"\n",
				filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), harness.FreePort(t)), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "check"}, {"serve"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				out, err := exec.CommandContext(ctx, bin, append(args, "--config", conf)...).CombinedOutput()
				cancel()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), keyPath) || !strings.Contains(string(out), c.want) {
					t.Errorf("mailgate %s: %v, want exit 1 naming %s and saying %q:\n%s", strings.Join(args, " "), err, keyPath, c.want, out)
				}
			}
			if b, _ := os.ReadFile(keyPath); string(b) != c.content {
				t.Errorf("the key file changed to %q", b)
			}
		})
	}
}

// fkReadKey reads the generated key file, which must be mode 0600 and hold
// nothing but the key.
func fkReadKey(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no key file on the defaults: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %04o, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 16 || strings.ContainsAny(string(b), " \r\n") {
		t.Fatalf("%s holds %q, want a key without spaces or line breaks", path, b)
	}
	return string(b)
}

// fkReport POSTs a report the way Dovecot does, with auth setting the
// credentials, and returns the HTTP status.
func fkReport(t *testing.T, mg *harness.MG, auth func(*http.Request), login, src, session string, success bool) int {
	t.Helper()
	// A distinct password per session: one password repeated would be a
	// stale client, counted once.
	h := fnv.New32a()
	h.Write([]byte(session))
	body := fmt.Sprintf(`{"device_id":"","login":%q,"protocol":"imap","pwhash":"0%03x","remote":%q,"session_id":%q,"success":%t,"policy_reject":false,"tls":false}`,
		login, h.Sum32()&0xfff, src, session, success)
	req, err := http.NewRequest(http.MethodPost, mg.DovecotURL()+"?command=report", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fkBans returns `ban list --json` as a set of "login L" and "address A".
func fkBans(t *testing.T, mg *harness.MG) map[string]bool {
	t.Helper()
	out := mg.MustCLI(t, "ban", "list", "--json")
	var bs []struct {
		Kind    string `json:"kind"`
		IP      string `json:"ip"`
		Account string `json:"account"`
	}
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatalf("ban list --json: %v\n%s", err, out)
	}
	m := map[string]bool{}
	for _, b := range bs {
		m[b.Kind+" "+b.IP+b.Account] = true
	}
	return m
}
