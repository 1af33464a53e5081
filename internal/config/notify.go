package config

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"mailgate/internal/notify"
)

// NotifyTarget is one [[notify]] entry.
type NotifyTarget struct {
	Name         string        `toml:"name" doc:"A short name for logs and metrics (the target label): letters, digits, - and _, at most 32. Unique."`
	Kind         string        `toml:"kind" doc:"webhook (a JSON POST signed with HMAC-SHA256, docs/notifications.md), alertmanager (POST of Alertmanager's /api/v2/alerts JSON) or mail (through the local sendmail)."`
	URL          string        `toml:"url" doc:"webhook and alertmanager: the http:// or https:// URL posted to, e.g. http://127.0.0.1:9093/api/v2/alerts. Redirects are not followed."`
	SecretFile   string        `toml:"secret_file" doc:"webhook: the file holding the HMAC key (one line, at least 16 characters, not readable by other users: chmod 600). Every request carries X-Mailgate-Timestamp and X-Mailgate-Signature: sha256=hex(HMAC-SHA256(key, timestamp + \".\" + body)). Required for webhook."`
	Sendmail     []string      `toml:"sendmail" doc:"mail: the sendmail program and its first arguments; mailgate adds -i -f FROM -- TO... and writes the message to its input."`
	From         string        `toml:"from" doc:"mail: the sender address (envelope and From header)."`
	To           []string      `toml:"to" doc:"mail: the recipients, plain addresses (at most 50)."`
	Events       []string      `toml:"events" doc:"The events this target gets (login_banned, send_limit, new_country, shared_permit, firewall_failed, dnsbl_stale, geoip_stale); empty = every event switched on in [notifications]."`
	Timeout      time.Duration `toml:"timeout" doc:"How long one delivery may take, 1s to 5m."`
	Retries      int           `toml:"retries" doc:"Attempts after a failed one (a connection error, HTTP 408, 429 or 5xx, a sendmail error), 0 to 20; any other HTTP answer is not retried."`
	Backoff      time.Duration `toml:"backoff" doc:"The wait before the first retry, doubled each time, 100ms to 1h."`
	MaxBackoff   time.Duration `toml:"max_backoff" doc:"The longest wait between retries, backoff to 24h."`
	Queue        int           `toml:"queue" doc:"The most events waiting for this target, 1 to 100000; when full, new events are dropped (mailgate_notify_dropped_total). A decision never waits for a notification."`
	ResolveAfter time.Duration `toml:"resolve_after" doc:"alertmanager: an alert's endsAt is its start plus this (a login ban's alert ends with the ban), 1m to 720h."`
}

// Notifications is [notifications]: the events and their rate limits.
type Notifications struct {
	Host               string        `toml:"host" doc:"The name notifications give this server (the host field, the instance label, the mail subject). \"\" = the host name."`
	MaxPerHour         int           `toml:"max_per_hour" doc:"The most notifications per hour over all accounts' events and subjects (firewall_failed, dnsbl_stale and geoip_stale are limited per subject only; a bucket of this many, refilled over the hour), 0 = no limit, up to 100000: an attacker spraying logins bans many accounts, and must not flood the admin's mailbox. The next notification that goes out says how many were suppressed."`
	MaxSubjects        int           `toml:"max_subjects" doc:"Memory bound: the most subjects (accounts, addresses, zones) whose last notification is remembered for the rate limits, 100 to 10000000; the oldest is forgotten first."`
	NewCountryLearning time.Duration `toml:"new_country_learning" doc:"new_country (needs a [geoip] database): the usual countries of the accounts (the last four) are learnt from their successful logins, in memory, for bruteforce.known_good_for; for this long after a start nothing is reported, 0 to 8760h. An account is reported only after it logged in from some country before."`
	GeoIPMaxAge        time.Duration `toml:"geoip_max_age" doc:"geoip_stale: the GeoIP database counts as stale when its build date is older than this, 24h to 8760h (checked hourly)."`

	LoginBanned    NotifyEvent `toml:"login_banned" doc:"An account's login was banned (bruteforce rule (a) or the slow-attack login rules): someone is guessing its password. The subject is the login."`
	SendLimit      NotifyEvent `toml:"send_limit" doc:"An account reached a sending limit ([limits]): perhaps a stolen password. The subject is the login."`
	NewCountry     NotifyEvent `toml:"new_country" doc:"An account logged in successfully from a country none of its recent logins came from. The subject is the login."`
	SharedPermit   NotifyEvent `toml:"shared_permit" doc:"A relay permit was granted or refreshed on an address (network) that relay.shared_logins accounts logged in from: everyone behind it may relay. The subject is the network."`
	FirewallFailed NotifyEvent `toml:"firewall_failed" doc:"table inet mailgate could not be applied or re-asserted. The subject is the firewall."`
	DNSBLStale     NotifyEvent `toml:"dnsbl_stale" doc:"A [dnsbl] zone failed its hourly health check (no longer answering, or listing everything). The subject is the zone."`
	GeoIPStale     NotifyEvent `toml:"geoip_stale" doc:"The GeoIP database is older than geoip_max_age. The subject is the file."`

	Owner NotifyOwner `toml:"owner" doc:"Mails to the account's owner, for login_banned and new_country: the time, address and country, and what to do if it was not them."`
}

// NotifyEvent switches one event and sets its rate.
type NotifyEvent struct {
	Enabled bool          `toml:"enabled" doc:"Notify this event."`
	Every   time.Duration `toml:"every" doc:"At most one notification per subject per this long, 0 to 720h (0 = every time, within max_per_hour)."`
}

// NotifyOwner is [notifications.owner].
type NotifyOwner struct {
	Enabled      bool              `toml:"enabled" doc:"Mail the account's owner. Off by default."`
	Events       []string          `toml:"events" doc:"Which events: login_banned, new_country."`
	Sendmail     []string          `toml:"sendmail" doc:"The sendmail program and its first arguments, as for [[notify]] sendmail."`
	From         string            `toml:"from" doc:"The sender address, e.g. postmaster@example.com. Required when enabled."`
	Domains      []string          `toml:"domains" doc:"The domains whose logins are mailed: a login that is an address at one of them gets the mail (e.g. [\"example.com\"]). Logins at other domains are never mailed, so that an attacker trying stranger@elsewhere cannot make this server mail strangers."`
	Addresses    map[string]string `toml:"addresses" doc:"Where to mail logins that are not addresses (or live elsewhere): login = \"address\", checked before domains."`
	Subject      string            `toml:"subject" doc:"The subject; placeholders as for template. \"\" = Security notice for {login}."`
	Template     string            `toml:"template" doc:"The mail's text. Placeholders: {login}, {time}, {ip}, {country}, {service}, {host}, {what} (a sentence saying what happened). Each is replaced once: a login that contains {ip} stays as typed. \"\" = a built-in text (docs/notifications.md)."`
	TemplateFile string            `toml:"template_file" doc:"A file with the text instead of template, an absolute path, at most 64 KiB, read at start and reload."`
	Every        time.Duration     `toml:"every" doc:"At most one mail per account and event per this long, 1m to 720h."`
	MaxPerHour   int               `toml:"max_per_hour" doc:"The most owner mails per hour over all accounts, 1 to 100000."`
	Timeout      time.Duration     `toml:"timeout" doc:"How long sendmail may take, 1s to 5m."`
}

// Bounds of the notification settings.
const (
	maxNotifyTargets    = 16
	maxNotifyRecipients = 50
	maxTemplateBytes    = 64 << 10
	maxURLLen           = 2048
)

var notifyName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// notifyKinds are the event names a config may use.
func notifyKinds() []string {
	var out []string
	for _, k := range notify.Kinds() {
		out = append(out, string(k))
	}
	return out
}

func defaultNotifications() Notifications {
	on := func(every time.Duration) NotifyEvent { return NotifyEvent{Enabled: true, Every: every} }
	return Notifications{
		MaxPerHour:         60,
		MaxSubjects:        100_000,
		NewCountryLearning: 7 * 24 * time.Hour,
		GeoIPMaxAge:        30 * 24 * time.Hour,
		LoginBanned:        on(time.Hour),
		SendLimit:          on(time.Hour),
		NewCountry:         on(24 * time.Hour),
		SharedPermit:       on(24 * time.Hour),
		FirewallFailed:     on(time.Hour),
		DNSBLStale:         on(24 * time.Hour),
		GeoIPStale:         on(24 * time.Hour),
		Owner: NotifyOwner{
			Events:     []string{"login_banned", "new_country"},
			Sendmail:   []string{"/usr/sbin/sendmail"},
			Domains:    []string{},
			Addresses:  map[string]string{},
			Every:      24 * time.Hour,
			MaxPerHour: 100,
			Timeout:    30 * time.Second,
		},
	}
}

// setDefaults fills the keys of a [[notify]] entry that its table left
// out (set says which it has).
func (t *NotifyTarget) setDefaults(set map[string]bool) {
	def := func(key string, f func()) {
		if !set[key] {
			f()
		}
	}
	def("timeout", func() { t.Timeout = 10 * time.Second })
	def("retries", func() { t.Retries = 5 })
	def("backoff", func() { t.Backoff = time.Second })
	def("max_backoff", func() { t.MaxBackoff = 5 * time.Minute })
	def("queue", func() { t.Queue = 1000 })
	def("resolve_after", func() { t.ResolveAfter = time.Hour })
	def("sendmail", func() {
		if t.Kind == "mail" {
			t.Sendmail = []string{"/usr/sbin/sendmail"}
		}
	})
	// A list left out is empty, as the example writes it.
	for _, l := range []*[]string{&t.Sendmail, &t.To, &t.Events} {
		if *l == nil {
			*l = []string{}
		}
	}
}

// notifyDefaults applies setDefaults to every [[notify]] entry, from the
// keys the file defined (in file order: a "notify" key opens an entry).
func notifyDefaults(keys []toml.Key, targets []NotifyTarget) {
	sets := make([]map[string]bool, len(targets))
	i := -1
	for _, k := range keys {
		if len(k) == 0 || k[0] != "notify" {
			continue
		}
		if len(k) == 1 {
			i++
			continue
		}
		if i >= 0 && i < len(sets) {
			if sets[i] == nil {
				sets[i] = map[string]bool{}
			}
			sets[i][k[1]] = true
		}
	}
	for i := range targets {
		targets[i].setDefaults(sets[i])
	}
}

// Events returns the per-kind switches.
func (n *Notifications) Events() map[notify.Kind]NotifyEvent {
	return map[notify.Kind]NotifyEvent{
		notify.LoginBanned: n.LoginBanned, notify.SendLimit: n.SendLimit, notify.NewCountry: n.NewCountry,
		notify.SharedPermit: n.SharedPermit, notify.FirewallFailed: n.FirewallFailed,
		notify.DNSBLStale: n.DNSBLStale, notify.GeoIPStale: n.GeoIPStale,
	}
}

// ReadSecretFile reads a one-line secret of at least MinTokenLen
// characters from a file other users cannot read (ReadLineFile). what
// names the secret in errors.
func ReadSecretFile(path, what string) (string, error) {
	s, err := ReadLineFile(path, what, 4096)
	if err != nil {
		return "", err
	}
	if len(s) < MinTokenLen {
		return "", fmt.Errorf("%s: the %s is shorter than %d characters (e.g. from: openssl rand -hex 32)", path, what, MinTokenLen)
	}
	return s, nil
}

// ReadTemplateFile reads an owner mail template.
func ReadTemplateFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTemplateBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxTemplateBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxTemplateBytes)
	}
	return string(b), nil
}

func checkDur(bad func(key, format string, args ...any), key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		bad(key, "%v is out of range (want %v to %v)", d, lo, hi)
	}
}

func checkSendmail(bad func(key, format string, args ...any), key string, argv []string) {
	switch {
	case len(argv) == 0:
		bad(key, "empty (want e.g. [\"/usr/sbin/sendmail\"])")
	case !filepath.IsAbs(argv[0]):
		bad(key, "%q is not an absolute path", argv[0])
	}
	for _, a := range argv {
		if len(a) > maxPathLen || strings.ContainsAny(a, "\x00\r\n") {
			bad(key, "an argument is too long or holds a NUL byte or a line break")
		}
	}
}

func (n *Notifications) validate(targets []NotifyTarget, bad func(key, format string, args ...any)) {
	if n.MaxPerHour < 0 || n.MaxPerHour > 100_000 {
		bad("notifications.max_per_hour", "%d is out of range (want 0 to 100000)", n.MaxPerHour)
	}
	if n.MaxSubjects < 100 || n.MaxSubjects > 10_000_000 {
		bad("notifications.max_subjects", "%d is out of range (want 100 to 10000000)", n.MaxSubjects)
	}
	if len(n.Host) > 253 || strings.ContainsFunc(n.Host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("notifications.host", "%q is not a host name", n.Host)
	}
	checkDur(bad, "notifications.new_country_learning", n.NewCountryLearning, 0, 8760*time.Hour)
	checkDur(bad, "notifications.geoip_max_age", n.GeoIPMaxAge, 24*time.Hour, 8760*time.Hour)
	for k, ev := range n.Events() {
		checkDur(bad, "notifications."+string(k)+".every", ev.Every, 0, 720*time.Hour)
	}
	o := &n.Owner
	checkList(bad, "notifications.owner.events", o.Events, []string{"login_banned", "new_country"})
	if o.Enabled {
		checkSendmail(bad, "notifications.owner.sendmail", o.Sendmail)
		if err := notify.CheckAddress(o.From); err != nil {
			bad("notifications.owner.from", "%v", err)
		}
		if len(o.Domains) == 0 && len(o.Addresses) == 0 {
			bad("notifications.owner.domains", "empty, and so is addresses: no account would ever be mailed (want the domains this server hosts)")
		}
	}
	for i, d := range o.Domains {
		if d == "" || len(d) > 253 || strings.ContainsAny(d, "@ \t\r\n\x00,") {
			bad("notifications.owner.domains["+strconv.Itoa(i)+"]", "%q is not a domain", d)
		}
	}
	for login, a := range o.Addresses {
		if err := notify.CheckAddress(a); err != nil {
			bad("notifications.owner.addresses."+login, "%v", err)
		}
	}
	if len(o.Subject) > 256 || strings.ContainsAny(o.Subject, "\x00\r\n") {
		bad("notifications.owner.subject", "longer than 256 bytes, or holds a line break")
	}
	if len(o.Template) > maxTemplateBytes {
		bad("notifications.owner.template", "longer than %d bytes", maxTemplateBytes)
	}
	if o.TemplateFile != "" {
		if o.Template != "" {
			bad("notifications.owner.template_file", "set, and so is template: set one of them")
		} else if !filepath.IsAbs(o.TemplateFile) {
			bad("notifications.owner.template_file", "%q is not an absolute path", o.TemplateFile)
		} else if _, err := ReadTemplateFile(o.TemplateFile); err != nil {
			bad("notifications.owner.template_file", "%v", err)
		}
	}
	checkDur(bad, "notifications.owner.every", o.Every, time.Minute, 720*time.Hour)
	if o.MaxPerHour < 1 || o.MaxPerHour > 100_000 {
		bad("notifications.owner.max_per_hour", "%d is out of range (want 1 to 100000)", o.MaxPerHour)
	}
	checkDur(bad, "notifications.owner.timeout", o.Timeout, time.Second, 5*time.Minute)

	if len(targets) > maxNotifyTargets {
		bad("notify", "%d targets; at most %d", len(targets), maxNotifyTargets)
	}
	for i := range targets {
		t := &targets[i]
		key := "notify[" + strconv.Itoa(i) + "]"
		if !notifyName.MatchString(t.Name) {
			bad(key+".name", "%q is not a name (want letters, digits, - and _, at most 32)", t.Name)
		} else if t.Name == "owner" {
			bad(key+".name", "owner is the name of the owner mails ([notifications.owner]); choose another")
		}
		for j := range i {
			if targets[j].Name == t.Name {
				bad(key+".name", "%q is already notify[%d]", t.Name, j)
			}
		}
		switch t.Kind {
		case "webhook", "alertmanager":
			u, err := url.Parse(t.URL)
			switch {
			case t.URL == "":
				bad(key+".url", "empty (want the receiver's http:// or https:// URL)")
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(t.URL) > maxURLLen:
				bad(key+".url", "%q is not an http:// or https:// URL", t.URL)
			case u.User != nil:
				bad(key+".url", "holds a user or password: it would show in logs; use secret_file")
			}
			if t.Kind == "webhook" {
				if t.SecretFile == "" {
					bad(key+".secret_file", "empty: a webhook is always signed (want a file with the key: openssl rand -hex 32 > FILE; chmod 600 FILE)")
				} else if _, err := ReadSecretFile(t.SecretFile, "webhook key"); err != nil {
					bad(key+".secret_file", "%v", err)
				}
			} else if t.SecretFile != "" {
				bad(key+".secret_file", "only for kind = \"webhook\"")
			}
			checkDur(bad, key+".resolve_after", t.ResolveAfter, time.Minute, 720*time.Hour)
		case "mail":
			checkSendmail(bad, key+".sendmail", t.Sendmail)
			if err := notify.CheckAddress(t.From); err != nil {
				bad(key+".from", "%v", err)
			}
			if len(t.To) == 0 || len(t.To) > maxNotifyRecipients {
				bad(key+".to", "%d recipients (want 1 to %d)", len(t.To), maxNotifyRecipients)
			}
			for j, a := range t.To {
				if err := notify.CheckAddress(a); err != nil {
					bad(key+".to["+strconv.Itoa(j)+"]", "%v", err)
				}
			}
			if t.URL != "" || t.SecretFile != "" {
				bad(key+".url", "url and secret_file are not for kind = \"mail\"")
			}
		default:
			bad(key+".kind", "%q is not a kind (want webhook, alertmanager or mail)", t.Kind)
		}
		checkList(bad, key+".events", t.Events, notifyKinds())
		checkDur(bad, key+".timeout", t.Timeout, time.Second, 5*time.Minute)
		if t.Retries < 0 || t.Retries > 20 {
			bad(key+".retries", "%d is out of range (want 0 to 20)", t.Retries)
		}
		checkDur(bad, key+".backoff", t.Backoff, 100*time.Millisecond, time.Hour)
		checkDur(bad, key+".max_backoff", t.MaxBackoff, t.Backoff, 24*time.Hour)
		if t.Queue < 1 || t.Queue > 100_000 {
			bad(key+".queue", "%d is out of range (want 1 to 100000)", t.Queue)
		}
	}
}

// notifyExample is the [[notify]] entry the example config shows.
func notifyExample() NotifyTarget {
	t := NotifyTarget{Name: "ops", Kind: "webhook", URL: "https://hooks.example.com/mailgate", SecretFile: "/etc/mailgate/webhook.key", Sendmail: []string{}, To: []string{}, Events: []string{}}
	t.setDefaults(nil)
	return t
}
