package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
	"mailgate/internal/notify"
	"mailgate/test/harness"
)

const (
	ntVictim, ntVictimPW = "victim@example.test", "Victim-Secret-5150"
	ntAdmin              = "admin@example.test"
	ntAPIKey             = "notify-e2e-policy-key-777"
	ntWebhookKey         = "notify-e2e-webhook-key-0123456789abcdef"
)

// ntReceiver is the webhook receiver: it checks each request's signature
// the way docs/notifications.md tells a user to, and keeps the events.
type ntReceiver struct {
	mu     sync.Mutex
	events []notify.JSON
	bad    []string
	got    chan struct{}
}

func (r *ntReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !notify.Verify([]byte(ntWebhookKey), req.Header.Get(notify.HeaderTimestamp), body, req.Header.Get(notify.HeaderSignature), time.Now(), 5*time.Minute) {
		r.bad = append(r.bad, string(body))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var e notify.JSON
	if err := json.Unmarshal(body, &e); err != nil {
		r.bad = append(r.bad, string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.events = append(r.events, e)
	select {
	case r.got <- struct{}{}:
	default:
	}
}

// TestNotifyLoginBanned: a successful IMAP login through the real
// Dovecot from a country the account did not use before, then failed
// logins that ban the account's login; mailgate posts signed new_country
// and login_banned webhooks, and mails the admin and the account's owner
// through the real Postfix's sendmail, which delivers them into maildirs
// in the temp dir. A login at a stranger's domain, banned the same way,
// is never mailed. The GeoIP database, built in 2024, is reported stale.
func TestNotifyLoginBanned(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	harness.RequirePostfix(t)
	dir := harness.TempDir(t, "notify-")

	// The maildirs belong to nobody: Postfix's virtual agent delivers
	// as the uid virtual_uid_maps names, never as root.
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(mailDir, uid, gid); err != nil {
		t.Fatal(err)
	}

	// Postfix needs a Dovecot auth service (PostfixOptions), mailgate
	// needs Postfix's directory (sendmail -C), the IMAP Dovecot needs
	// mailgate's URL: a first Dovecot serves Postfix's SASL only.
	sasl := harness.StartDovecot(t, harness.DovecotOptions{
		Users:        map[string]string{ntVictim: ntVictimPW},
		AuthListener: true,
	})
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: sasl.AuthAddr,
		Extra: fmt.Sprintf(`virtual_mailbox_domains = example.test
virtual_transport = virtual
virtual_mailbox_base = %s
virtual_mailbox_maps = inline:{ %s=admin/, %s=victim/ }
virtual_uid_maps = static:%d
virtual_gid_maps = static:%d
virtual_minimum_uid = 1
`, mailDir, ntAdmin, ntVictim, uid, gid),
		MasterExtra: "virtual   unix  -       n       n       -       -       virtual\n",
	})

	rcv := &ntReceiver{got: make(chan struct{}, 16)}
	hook := httptest.NewServer(rcv) // 127.0.0.1
	defer hook.Close()
	keyFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(keyFile, []byte(ntWebhookKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Two addresses with a country each (the others have none).
	geoDB := filepath.Join(dir, "country.mmdb")
	if err := geoiptest.WriteMMDB(geoDB, map[string]string{"127.0.0.157/32": "DE", "127.0.0.158/32": "BR"}, geoiptest.ShapeMaxMind); err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, ntAPIKey, fmt.Sprintf(`
[metrics]
listen = %q

[geoip]
database = %q

[[notify]]
name = "hook"
kind = "webhook"
url = %q
secret_file = %q
events = ["login_banned", "new_country"]

[[notify]]
name = "admin-mail"
kind = "mail"
sendmail = ["/usr/sbin/sendmail", "-C", %q]
from = "mailgate@example.test"
to = [%q]

[notifications]
host = "mx-e2e"
new_country_learning = "0s"

[notifications.owner]
enabled = true
sendmail = ["/usr/sbin/sendmail", "-C", %q]
from = "postmaster@example.test"
domains = ["example.test"]
`, metricsAddr, geoDB, hook.URL, keyFile, pf.Dir, ntAdmin, pf.Dir)))
	dcp := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{ntVictim: ntVictimPW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    ntAPIKey,
	})

	// The victim logs in from Germany (learnt: a first country is
	// never new), then from Brazil.
	bfOK(t, "imap", dcp, "127.0.0.157", ntVictim, ntVictimPW)
	mg.WaitLogLine(t, map[string]string{"auth": "success", "login": ntVictim, "ip": "127.0.0.157"})
	bfOK(t, "imap", dcp, "127.0.0.158", ntVictim, ntVictimPW)
	mg.WaitLogLine(t, map[string]string{"auth": "success", "login": ntVictim, "ip": "127.0.0.158"})

	// Rule (a): three failures of one login from three addresses. A
	// stranger's address is attacked too.
	attack := func(login string, srcs ...string) {
		for _, src := range srcs {
			_, err := bfLogin("imap", dcp, src, login, "a wrong guess "+src)
			if err == nil {
				t.Fatalf("a wrong password for %s from %s logged in", login, src)
			}
			mg.WaitLogLine(t, map[string]string{"auth": "failure", "login": login, "ip": src})
		}
		mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "login", "login": login})
	}
	attack(ntVictim, "127.0.0.151", "127.0.0.152", "127.0.0.153")
	attack("stranger@elsewhere.test", "127.0.0.154", "127.0.0.155", "127.0.0.156")

	// The webhook: the new country and both bans, signed.
	deadline := time.After(30 * time.Second)
	for {
		rcv.mu.Lock()
		n, bad := len(rcv.events), len(rcv.bad)
		rcv.mu.Unlock()
		if bad > 0 {
			t.Fatalf("the receiver refused %d requests (bad signature or body): %q", bad, rcv.bad)
		}
		if n >= 3 {
			break
		}
		select {
		case <-rcv.got:
		case <-deadline:
			t.Fatalf("the webhook got %d events, want 3; mailgate log:\n%s", n, mg.Stderr())
		}
	}
	rcv.mu.Lock()
	nc, ev := rcv.events[0], rcv.events[1]
	rcv.mu.Unlock()
	if nc.Event != "new_country" || nc.Login != ntVictim || nc.IP != "127.0.0.158" || nc.Country != "BR" || nc.Service != "imap" {
		t.Errorf("webhook event %+v, want new_country BR", nc)
	}
	if ev.Event != "login_banned" || ev.Login != ntVictim || ev.IP != "127.0.0.153" || ev.Host != "mx-e2e" || ev.Until.IsZero() {
		t.Errorf("webhook event %+v", ev)
	}

	// The mails: the admin gets one per event (and one for the GeoIP
	// database, built in 2024: geoip_stale at start), the owner two;
	// the stranger's domain none.
	admin := ntWaitMail(t, filepath.Join(mailDir, "admin"), 4, pf)
	owners := ntWaitMail(t, filepath.Join(mailDir, "victim"), 2, pf)
	var subjects []string
	for _, m := range admin {
		subjects = append(subjects, m.Header.Get("Subject"))
		if m.Header.Get("From") != "mailgate@example.test" || m.Header.Get("Auto-Submitted") != "auto-generated" {
			t.Errorf("admin mail headers %v", m.Header)
		}
	}
	if all := strings.Join(subjects, "\n"); !strings.Contains(all, "account "+ntVictim+" is under attack") || !strings.Contains(all, "new country (BR)") ||
		!strings.Contains(all, "GeoIP database is stale") {
		t.Errorf("admin mail subjects %q", subjects)
	}
	var bodies []string
	for _, m := range owners {
		if m.Header.Get("To") != ntVictim || m.Header.Get("From") != "postmaster@example.test" {
			t.Errorf("owner mail headers %v", m.Header)
		}
		b, _ := io.ReadAll(m.Body)
		bodies = append(bodies, string(b))
	}
	all := strings.Join(bodies, "\n----\n")
	for _, want := range []string{"127.0.0.153", "wrong passwords for your account", "127.0.0.158", "Country: BR", "a country it was not used from before", "change your password"} {
		if !strings.Contains(all, want) {
			t.Errorf("the owner's mails lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(pf.MailLog(), "elsewhere.test") && strings.Contains(pf.MailLog(), "to=<stranger@elsewhere.test>") {
		t.Errorf("the stranger's address was mailed:\n%s", pf.MailLog())
	}
	// The webhook key never reaches the log.
	if strings.Contains(mg.Stderr(), ntWebhookKey) {
		t.Error("the webhook key is in mailgate's log")
	}
	// The metrics count what went out.
	m := scrape(t, metricsAddr)
	for name, want := range map[string]float64{`mailgate_notify_sent_total{target="hook"}`: 3, `mailgate_notify_sent_total{target="admin-mail"}`: 4, `mailgate_notify_sent_total{target="owner"}`: 2} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

// ntWaitMail waits until dir/new holds n messages and parses them.
func ntWaitMail(t *testing.T, dir string, n int, pf *harness.Postfix) []*mail.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // pickup may wait for its 60 s timer
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
		if len(files) >= n {
			var out []*mail.Message
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				m, err := mail.ReadMessage(strings.NewReader(string(b)))
				if err != nil {
					t.Fatalf("%s: %v\n%s", f, err, b)
				}
				out = append(out, m)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages, want %d; postfix log:\n%s", dir, len(files), n, pf.MailLog())
		}
		time.Sleep(200 * time.Millisecond) // polling a directory another process fills
	}
}

// TestNotifyReload: a daemon started without targets gets a webhook by
// `mailgate reload`, and a DNSBL zone added in the same reload that fails
// its health check (its resolver is a closed port) reaches the webhook
// as dnsbl_stale; a reload whose key file other users may read is
// refused, and the running webhook stays.
func TestNotifyReload(t *testing.T) {
	dir := harness.TempDir(t, "notify-reload-")
	rcv := &ntReceiver{got: make(chan struct{}, 16)}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	keyFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(keyFile, []byte(ntWebhookKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := mailgateConfig(t, dir, ntAPIKey, "")
	mg := harness.StartMailgate(t, base)
	e := &reloadEnv{mg: mg, dir: dir}
	withHook := base + fmt.Sprintf(`
[[notify]]
name = "hook"
kind = "webhook"
url = %q
secret_file = %q

[dnsbl]
zones = ["bl.example.test"]
resolver = "127.0.0.1:9"
budget = "200ms"
`, hook.URL, keyFile)
	e.write(t, withHook)
	r := e.reload(t, true)
	if !strings.Contains(strings.Join(r.Applied, " "), "notify") {
		t.Errorf("applied %q, want notify", r.Applied)
	}
	select {
	case <-rcv.got:
	case <-time.After(30 * time.Second):
		t.Fatalf("no webhook after the reload; log:\n%s", mg.Stderr())
	}
	rcv.mu.Lock()
	ev := rcv.events[0]
	rcv.mu.Unlock()
	if ev.Event != "dnsbl_stale" || ev.Subject != "bl.example.test" || ev.Detail == "" {
		t.Errorf("event %+v, want dnsbl_stale for bl.example.test", ev)
	}

	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.reload(t, false)
	if msg := strings.Join(r.Errors, "\n"); !strings.Contains(msg, "secret_file") || !strings.Contains(msg, "chmod 600") || strings.Contains(msg, ntWebhookKey) {
		t.Errorf("refused reload said %q", msg)
	}
	os.Chmod(keyFile, 0o600)
	if out := mg.MustCLI(t, "notify", "test", "--config", mg.ConfigPath); !strings.Contains(out, "hook: ok") {
		t.Errorf("notify test: %s", out)
	}
}

// TestNotifyAlertmanager: the daemon posts to a real Alertmanager, which
// takes the alert (it answers 400 to a body that is not a valid
// postableAlert list) and lists it with mailgate's labels and
// annotations: a DNSBL zone whose resolver is a closed port fails its
// health check at start.
func TestNotifyAlertmanager(t *testing.T) {
	am := harness.StartAlertmanager(t)
	dir := harness.TempDir(t, "notify-am-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, ntAPIKey, fmt.Sprintf(`
[[notify]]
name = "am"
kind = "alertmanager"
url = "%s/api/v2/alerts"
resolve_after = "2h"

[notifications]
host = "mx-am"

[dnsbl]
zones = ["bl.example.test"]
resolver = "127.0.0.1:9"
budget = "200ms"
`, am.URL)))
	type alert struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
		Status      struct {
			State string `json:"state"`
		} `json:"status"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var alerts []alert
		if err := json.Unmarshal(am.Alerts(t), &alerts); err != nil {
			t.Fatal(err)
		}
		if len(alerts) > 0 {
			a := alerts[0]
			if len(alerts) != 1 || a.Labels["alertname"] != "MailgateDNSBLStale" || a.Labels["subject"] != "bl.example.test" ||
				a.Labels["instance"] != "mx-am" || a.Labels["service"] != "mailgate" || a.Labels["severity"] != "warning" ||
				!strings.Contains(a.Annotations["summary"], "bl.example.test") || a.Annotations["description"] == "" ||
				a.EndsAt.Sub(a.StartsAt) != 2*time.Hour || a.Status.State != "active" {
				t.Fatalf("alerts %+v", alerts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Alertmanager holds no alert; mailgate log:\n%s", mg.Stderr())
		}
		time.Sleep(200 * time.Millisecond) // polling another process
	}
}
