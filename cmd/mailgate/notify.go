package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/geoip"
	"mailgate/internal/metrics"
	"mailgate/internal/notify"
	"mailgate/internal/policy"
	"mailgate/internal/postfix"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
)

// notifier is the daemon's side of internal/notify: it turns what the
// doors, the firewall and the health checks see into notify.Events. Its
// hooks run on the decision paths and only do a non-blocking hand-off
// (notify.Notifier.Notify); a hook whose event is switched off costs a
// lock-free check at most.
type notifier struct {
	n       *notify.Notifier
	tracker *abuse.Tracker
	engine  *policy.Engine
	started time.Time
	log     *slog.Logger

	// set is swapped whole by a reload; the hooks read it without a lock.
	set atomic.Pointer[notifySettings]
}

// notifySettings are the notifier's settings a reload changes.
type notifySettings struct {
	learning  time.Duration
	geoMaxAge time.Duration
	on        map[notify.Kind]bool // never changed after it is stored
}

// abuseConfig is the tracker's config: [bruteforce], and the usual
// countries of each login kept when new_country notifications go
// somewhere.
func abuseConfig(cfg *config.Config) abuse.Config {
	ac := cfg.BruteForce.Abuse()
	ac.TrackCountries = tracksCountries(cfg)
	return ac
}

// tracksCountries reports whether new_country notifications can be sent:
// switched on, a GeoIP database, and a target or the owner taking them.
func tracksCountries(cfg *config.Config) bool {
	n := &cfg.Notifications
	if !n.NewCountry.Enabled || cfg.GeoIP.Database == "" {
		return false
	}
	if n.Owner.Enabled && slices.Contains(n.Owner.Events, string(notify.NewCountry)) {
		return true
	}
	for _, t := range cfg.Notify {
		if len(t.Events) == 0 || slices.Contains(t.Events, string(notify.NewCountry)) {
			return true
		}
	}
	return false
}

// notifyConfig turns the config into the notifier's, reading the
// webhook keys and the owner template file.
func notifyConfig(cfg *config.Config) (notify.Config, error) {
	nc := cfg.Notifications
	host := nc.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	out := notify.Config{Events: map[notify.Kind]notify.EventConfig{}, MaxPerHour: nc.MaxPerHour, MaxSubjects: nc.MaxSubjects, Host: host}
	for k, e := range nc.Events() {
		out.Events[k] = notify.EventConfig{Enabled: e.Enabled, Every: e.Every}
	}
	for i, t := range cfg.Notify {
		kinds := make([]notify.Kind, len(t.Events))
		for j, e := range t.Events {
			kinds[j] = notify.Kind(e)
		}
		p := notify.RetryPolicy{Retries: t.Retries, Backoff: t.Backoff, Max: t.MaxBackoff}
		switch t.Kind {
		case "webhook", "alertmanager":
			h := &notify.HTTPTarget{TargetName: t.Name, Kind: notify.Webhook, URL: t.URL, Events: kinds, Timeout: t.Timeout,
				Policy: p, Queue: t.Queue, Host: host, ResolveIn: t.ResolveAfter}
			if t.Kind == "alertmanager" {
				h.Kind = notify.Alertmanager
			} else {
				key, err := config.ReadSecretFile(t.SecretFile, "webhook key")
				if err != nil {
					return notify.Config{}, fmt.Errorf("notify[%d].secret_file: %w", i, err)
				}
				h.Secret = []byte(key)
			}
			out.Targets = append(out.Targets, h)
		case "mail":
			out.Targets = append(out.Targets, &notify.MailTarget{TargetName: t.Name, Sendmail: t.Sendmail, From: t.From, To: t.To,
				Events: kinds, Timeout: t.Timeout, Policy: p, Queue: t.Queue, Host: host})
		}
	}
	if o := nc.Owner; o.Enabled {
		tmpl := o.Template
		if o.TemplateFile != "" {
			var err error
			if tmpl, err = config.ReadTemplateFile(o.TemplateFile); err != nil {
				return notify.Config{}, fmt.Errorf("notifications.owner.template_file: %w", err)
			}
		}
		// Logins are matched case-insensitively (Owner.Address lowers
		// the login).
		addrs := make(map[string]string, len(o.Addresses))
		for login, a := range o.Addresses {
			addrs[strings.ToLower(login)] = a
		}
		out.Owner = &notify.Owner{Sendmail: o.Sendmail, From: o.From, Subject: o.Subject, Template: tmpl, Domains: o.Domains,
			Addresses: addrs, Every: o.Every, MaxPerHour: o.MaxPerHour, Timeout: o.Timeout,
			Policy: notify.RetryPolicy{Retries: 3, Backoff: time.Minute, Max: 10 * time.Minute}, Queue: 1000, Host: host}
		for _, k := range o.Events {
			ec := out.Events[notify.Kind(k)]
			ec.Owner = true
			out.Events[notify.Kind(k)] = ec
		}
	}
	return out, nil
}

func newNotifier(cfg *config.Config, tracker *abuse.Tracker, engine *policy.Engine, now time.Time, log *slog.Logger) (*notifier, error) {
	nc, err := notifyConfig(cfg)
	if err != nil {
		return nil, err
	}
	x := &notifier{n: notify.New(nc, log), tracker: tracker, engine: engine, started: now, log: log}
	x.apply(cfg, nc)
	return x, nil
}

func (x *notifier) apply(cfg *config.Config, nc notify.Config) {
	s := &notifySettings{learning: cfg.Notifications.NewCountryLearning, geoMaxAge: cfg.Notifications.GeoIPMaxAge, on: map[notify.Kind]bool{}}
	for k, e := range nc.Events {
		// An event goes somewhere when a target takes it or its owner
		// is told.
		s.on[k] = e.Enabled && (e.Owner || wanted(nc.Targets, k))
	}
	x.set.Store(s)
}

func wanted(ts []notify.Target, k notify.Kind) bool {
	for _, t := range ts {
		if t.Wants(k) {
			return true
		}
	}
	return false
}

// enabled reports whether events of kind k go anywhere.
func (x *notifier) enabled(k notify.Kind) bool {
	return x.set.Load().on[k]
}

// prepare reads what a reload's config needs (the keys, the template):
// an error refuses the reload.
func (x *notifier) prepare(cfg *config.Config) (notify.Config, error) { return notifyConfig(cfg) }

// reconfigure applies a prepared config.
func (x *notifier) reconfigure(cfg *config.Config, nc notify.Config) {
	x.n.Reconfigure(nc)
	x.apply(cfg, nc)
}

// run dispatches until ctx ends, and checks the GeoIP database's age
// every hour (and at start).
func (x *notifier) run(ctx context.Context, geo func() *geoip.Locator) {
	var wg sync.WaitGroup
	wg.Go(func() { x.n.Run(ctx) })
	defer wg.Wait()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		x.checkGeoIP(geo(), time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkGeoIP reports a database built longer than geoip_max_age ago.
func (x *notifier) checkGeoIP(loc *geoip.Locator, now time.Time) {
	if loc == nil || !x.enabled(notify.GeoIPStale) {
		return
	}
	maxAge := x.set.Load().geoMaxAge
	i := loc.Info()
	if i.Built.IsZero() || now.Sub(i.Built) <= maxAge {
		return
	}
	x.n.Notify(notify.Event{Kind: notify.GeoIPStale, Time: now, Subject: i.Path,
		Detail: fmt.Sprintf("%s was built %s, %d days ago (notifications.geoip_max_age is %v)", i.Path, i.Built.Format(time.DateOnly), int(now.Sub(i.Built).Hours()/24), maxAge)})
}

// bans reports the login bans among bans, made by a's failure.
func (x *notifier) bans(bans []abuse.Ban, a *policy.Attempt, now time.Time) {
	if len(bans) == 0 || !x.enabled(notify.LoginBanned) {
		return
	}
	for i := range bans {
		b := &bans[i]
		if b.Kind != abuse.BanLogin {
			continue
		}
		x.n.Notify(notify.Event{Kind: notify.LoginBanned, Time: now, Login: b.Login, Addr: a.Client, Country: knownCountry(a.Country),
			Service: a.Service.String(), Until: b.Expires, Detail: b.Reason})
	}
}

// banSettle is how long a node waits before it tells of a login ban it
// made in a cluster: time for the copies other nodes made of the same ban
// to reach it and merge (they are published at once; login results within
// 50 ms).
const banSettle = 2 * time.Second

// clusterBans tells of the login bans this node made, in a cluster. Every
// node counts every node's login results, so several may make the same
// ban, from an attempt seen here or from one another node published; the
// copies merge into the one with the smallest id, and only the node that
// made a copy numbered it (ids come from ranges each node reserves). After
// banSettle, the node whose copy is still held under its own id tells: one
// notification per ban, whichever node saw the deciding attempt. (Telling
// only on the node that saw the deciding attempt loses the ban when two
// nodes each cross the threshold on the other's attempt.)
func (x *notifier) clusterBans(bans []abuse.Ban, a *policy.Attempt, held func(id int64, now time.Time) (abuse.Ban, bool)) {
	if len(bans) == 0 || !x.enabled(notify.LoginBanned) {
		return
	}
	at := *a
	time.AfterFunc(banSettle, func() {
		now := time.Now()
		kept := bans[:0:0]
		for _, b := range bans {
			if _, ok := held(b.ID, now); ok {
				kept = append(kept, b)
			}
		}
		x.bans(kept, &at, now)
	})
}

// knownCountry drops the "private" and "unknown" markers.
func knownCountry(cc string) string {
	if len(cc) == 2 {
		return cc
	}
	return ""
}

// success is called for a successful login before the tracker records
// it: a login from a country the account has not used recently (after
// the learning time since start) is reported.
func (x *notifier) success(a *policy.Attempt, now time.Time) {
	if !x.enabled(notify.NewCountry) {
		return
	}
	learning := x.set.Load().learning
	geo := x.engine.Settings().Geo
	if geo == nil || now.Sub(x.started) < learning || a.Login == "" {
		return
	}
	cc, kind := geo(a.Client)
	if kind != policy.CountryFound || !x.tracker.NewCountry(a.Login, cc, now) {
		return
	}
	x.n.Notify(notify.Event{Kind: notify.NewCountry, Time: now, Login: a.Login, Addr: a.Client, Country: cc, Service: a.Service.String()})
}

// permit reports a permit granted or refreshed on a shared network.
func (x *notifier) permit(grants *permits, p relay.Permit, o relay.Outcome, login string, svc rules.Service, addr netip.Addr, now time.Time) {
	if grants == nil || (o != relay.Granted && o != relay.Refreshed) || !x.enabled(notify.SharedPermit) {
		return
	}
	shared, accounts := grants.t.Shared(addr, now)
	if !shared {
		return
	}
	x.n.Notify(notify.Event{Kind: notify.SharedPermit, Time: now, Login: login, Addr: addr, Prefix: p.Prefix, Subject: p.Prefix.String(),
		Service: svc.String(), Accounts: accounts})
}

// firewallFailed reports a firewall error.
func (x *notifier) firewallFailed(what string, err error, now time.Time) {
	if x == nil || !x.enabled(notify.FirewallFailed) {
		return
	}
	x.n.Notify(notify.Event{Kind: notify.FirewallFailed, Time: now, Subject: "firewall", Detail: what + ": " + err.Error()})
}

// dnsblFailed reports a zone failing its health check.
func (x *notifier) dnsblFailed(zone, problem string, now time.Time) {
	if x == nil || !x.enabled(notify.DNSBLStale) {
		return
	}
	x.n.Notify(notify.Event{Kind: notify.DNSBLStale, Time: now, Subject: zone, Detail: problem})
}

// limiter wraps the Postfix door's sending limits: a sender over a limit
// is reported.
func (x *notifier) limiter(l postfix.Limiter) postfix.Limiter {
	return notifyingLimiter{l: l, x: x}
}

type notifyingLimiter struct {
	l postfix.Limiter
	x *notifier
}

func (n notifyingLimiter) Rcpt(login, instance string, now time.Time) sendlimit.Exceeded {
	ex := n.l.Rcpt(login, instance, now)
	if !ex.OK() && n.x.enabled(notify.SendLimit) {
		n.x.n.Notify(notify.Event{Kind: notify.SendLimit, Time: now, Login: login,
			Detail: ex.Limit + " " + strconv.Itoa(ex.Max)})
	}
	return ex
}

// writeMetrics writes the mailgate_notify_* series, each family's
// series together.
func (x *notifier) writeMetrics(w io.Writer) {
	s := x.n.Stats()
	var ownerRate uint64
	for _, t := range s.Targets {
		ownerRate += t.OwnerLimit
	}
	metrics.WriteCounter(w, `mailgate_notify_events_total`, s.Accepted)
	metrics.WriteCounter(w, `mailgate_notify_dropped_total{reason="intake_full"}`, s.IntakeDropped)
	for _, t := range s.Targets {
		metrics.WriteCounter(w, `mailgate_notify_dropped_total{reason="queue_full",target="`+t.Name+`"}`, t.QueueFull)
	}
	metrics.WriteCounter(w, `mailgate_notify_suppressed_total{reason="off"}`, s.Off)
	metrics.WriteCounter(w, `mailgate_notify_suppressed_total{reason="subject_rate"}`, s.RateSubject)
	metrics.WriteCounter(w, `mailgate_notify_suppressed_total{reason="global_rate"}`, s.RateGlobal)
	metrics.WriteCounter(w, `mailgate_notify_suppressed_total{reason="owner_rate"}`, ownerRate)
	metrics.WriteCounter(w, `mailgate_notify_subjects_evicted_total`, s.SubjectEvicted)
	for _, f := range []struct {
		name string
		v    func(notify.TargetStats) uint64
	}{
		{"mailgate_notify_sent_total", func(t notify.TargetStats) uint64 { return t.Sent }},
		{"mailgate_notify_failed_total", func(t notify.TargetStats) uint64 { return t.Failed }},
		{"mailgate_notify_retries_total", func(t notify.TargetStats) uint64 { return t.Retries }},
	} {
		for _, t := range s.Targets {
			metrics.WriteCounter(w, f.name+`{target="`+t.Name+`"}`, f.v(t))
		}
	}
	for _, t := range s.Targets {
		metrics.WriteGauge(w, `mailgate_notify_queue_length{target="`+t.Name+`"}`, float64(t.Queued))
	}
}

// cmdNotifyTest sends a test notification to every [[notify]] target of
// the config file (or the one --target names), once each, without
// retries, and says what each answered. It runs in the CLI, not through
// the daemon: it reads the webhook keys itself (run it as the user the
// daemon runs as).
func cmdNotifyTest(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cfgPath := fs.String("config", "", "the config `FILE` (default "+config.DefaultPath+")")
	only := fs.String("target", "", "only the target of this `NAME`")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: notify test takes no arguments (got %q)", errUsage, pos[0])
	}
	cfg, _, err := config.LoadOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	nc, err := notifyConfig(&cfg)
	if err != nil {
		return err
	}
	e := notify.Event{Kind: notify.Test, Time: time.Now()}
	failed, tried := 0, 0
	for _, t := range nc.Targets {
		if *only != "" && t.Name() != *only {
			continue
		}
		tried++
		if err := t.Deliver(ctx, &e); err != nil {
			failed++
			fmt.Fprintf(stdout, "%s: FAILED: %v\n", t.Name(), err)
		} else {
			fmt.Fprintf(stdout, "%s: ok\n", t.Name())
		}
	}
	switch {
	case tried == 0 && *only != "":
		return fmt.Errorf("notify test: no [[notify]] target is called %q", *only)
	case tried == 0:
		return errors.New("notify test: no [[notify]] target in the config")
	case failed > 0:
		return fmt.Errorf("notify test: %d of %d targets failed", failed, tried)
	}
	return nil
}
