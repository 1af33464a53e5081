package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/geoip"
	"mailgate/internal/notify"
	"mailgate/internal/password"
	"mailgate/internal/policy"
	"mailgate/internal/sendlimit"
)

// reloadRule says whether a config setting (a key such as
// "bruteforce.addr_failures", or a whole section such as "store") is
// applied by a reload or needs a restart. The most specific entry for a
// key decides. The reload code and docs/reload.md both come from
// reloadTable (TestReloadDocs), so the two cannot drift.
type reloadRule struct {
	Key    string
	Reload bool
	Why    string // what a reload does with it, or why it needs a restart
}

var reloadTable = []reloadRule{
	{"log.level", true, "the daemon's log level"},
	{"log.decisions", true, "the decision log goes to the new place; the old file is closed (SIGHUP also reopens the same file, for logrotate)"},
	{"store", false, "the database is opened once"},
	{"cluster", false, "the Redis connection and the node's name are set up once"},
	{"admin", false, "listeners and the token are set up at start"},
	{"console", false, "the listener, its sessions and sign-in limits are set up at start; users added or removed with 'mailgate console user' count at the next sign-in without a reload"},
	{"dovecot", false, "a listener (address, key, body limit) or a door turned on or off"},
	{"nginx", false, "a listener, its password check and its messages are set up at start"},
	{"postfix", false, "listeners and their answers are set up at start"},
	{"policy", true, "trusted and deny networks (also the firewall's trusted networks)"},
	{"geoip", true, "the database (opened anew; a file that cannot be read refuses the reload), the global country lists and what private and unknown addresses get"},
	{"bruteforce", true, "thresholds, windows and ban lengths; the counts, bans and known-good addresses stay (a shorter window or a smaller ring keeps the newest failures)"},
	{"bruteforce.ipv6_prefix", false, "keys every counter and ban"},
	{"bruteforce.max_keys", false, "sizes the tables"},
	{"bruteforce.max_known_good", false, "sizes the tables"},
	{"bruteforce.login_tarpit", false, "the doors' timeouts are sized from it"},
	{"bruteforce.stale_tarpit", false, "the doors' timeouts are sized from it"},
	{"relay", true, "ttl (for permits granted from now on), services, never networks, shared-network detection; the permits held stay"},
	{"relay.enabled", false, "turns a part of the daemon on or off"},
	{"relay.hook_socket", false, "a listener"},
	{"relay.hook_socket_group", false, "a listener"},
	{"relay.ipv6_prefix", false, "keys every permit"},
	{"relay.max_permits", false, "sizes the table"},
	{"limits", true, "the limits of every sender, also those already counted; the counts stay. Setting a limit when mailgate started without any needs a restart"},
	{"limits.max_accounts", false, "sizes the table"},
	{"firewall", true, "mode, ports, rates, priority, bans, trusted_for, reconcile_every: the rules are rewritten in the same table, its sets kept"},
	{"firewall.enabled", false, "turns a part of the daemon on or off"},
	{"dnsbl", true, "zones, threshold, services, resolver, timeouts and the cache: the cache is emptied when the zones or the resolver change, and the zones are health-checked again"},
	{"messages", true, "the texts refused users see"},
	{"password", true, "the policy (min_length, min_classes, min_score), the breached list (opened anew; a file that cannot be read or is not sorted refuses the reload), weak_days and check_rate; the flags kept stay"},
	{"password.check_listen", false, "a listener"},
	{"password.check_at_login", false, "the nginx door's check is set up at start"},
	{"password.refuse_weak_submission", false, "the doors' refusals are set up at start"},
	{"metrics", false, "a listener"},
	{"dnsbl_server", true, "zone, ttl, allow_networks and rate of the running DNSBL listener (from the next query)"},
	{"dnsbl_server.listen", false, "a listener"},
	{"logs", false, "the log door's followers (files, journalctl) are started at start"},
	{"notifications", true, "events, rates and owner mails; the rate limits' memory stays (a smaller max_subjects forgets the oldest)"},
	{"notify", true, "the targets are replaced (webhook keys and the owner template are read anew on every reload); the old targets deliver what they hold, then stop"},
}

// reloadRuleFor returns the most specific entry of reloadTable for key.
func reloadRuleFor(key string) (reloadRule, bool) {
	best, found := reloadRule{}, false
	for _, r := range reloadTable {
		if (key == r.Key || strings.HasPrefix(key, r.Key+".")) && len(r.Key) >= len(best.Key) {
			best, found = r, true
		}
	}
	return best, found
}

// configKeys lists the keys of config.Config as the file spells them,
// down to the values (a table such as [messages] or a list of tables
// such as [[limits.account]] is one key).
func configKeys() []string {
	var out []string
	walkConfig(reflect.TypeOf(config.Config{}), "", func(key string, _ []int) { out = append(out, key) })
	return out
}

func walkConfig(t reflect.Type, prefix string, f func(key string, index []int)) {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			idx := append(slices.Clone(index), i)
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
				walk(sf.Type, key+".", idx)
				continue
			}
			f(key, idx)
		}
	}
	walk(t, prefix, nil)
}

// changedKeys lists the keys whose values differ between a and b.
func changedKeys(a, b *config.Config) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	walkConfig(va.Type(), "", func(key string, index []int) {
		x, y := va.FieldByIndex(index).Interface(), vb.FieldByIndex(index).Interface()
		if !reflect.DeepEqual(x, y) && !(isEmpty(x) && isEmpty(y)) {
			out = append(out, key)
		}
	})
	return out
}

// isEmpty: a nil and an empty list or map are the same setting.
func isEmpty(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	}
	return false
}

// reloader re-reads the config file and applies what can change at run
// time to the running parts (see reloadTable). Reloads are serialized.
type reloader struct {
	mu    sync.Mutex
	path  string // as given to serve --config ("" = the default path, or built-in defaults)
	cfg   config.Config
	log   *slog.Logger
	level *slog.LevelVar

	book    *api.Rulebook
	engine  *policy.Engine
	tracker *abuse.Tracker
	geo     *geoHolder
	grants  *permits           // nil: relay permits off
	limiter *sendlimit.Limiter // nil: no sending limits at start
	fwall   *firewall          // nil: firewall off
	dnsbl   *dnsblServer       // nil: [dnsbl_server] off
	dw      *decisionWriter
	admin   *api.Server
	blocks  *dnsblService // the DNSBL client ([dnsbl])
	pws     *pwState
	notes   *notifier
}

// reload re-reads the config file and applies it. A config that fails
// `mailgate config check` is refused, and so is one whose GeoIP database
// cannot be opened: nothing changes then.
func (r *reloader) reload(ctx context.Context, actor string, now time.Time) api.ReloadJSON {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := api.ReloadJSON{Errors: []string{}, Applied: []string{}, NeedsRestart: []string{}, Warnings: []string{}}
	refuse := func(err error) api.ReloadJSON {
		res.Errors = append(res.Errors, errorLines(err)...)
		r.log.Error("config reload refused; the running config stays", "by", actor, "file", res.File, "err", strings.Join(res.Errors, "; "))
		return res
	}
	cfg, used, err := config.LoadOrDefault(r.path)
	res.File = used
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			res.File = ce.File
		}
		return refuse(err)
	}
	if err := checkDovecotKey(&cfg, io.Discard); err != nil {
		return refuse(err)
	}
	fixed, err := configRules(&cfg)
	if err != nil {
		return refuse(err)
	}

	old := r.cfg
	changed := changedKeys(&old, &cfg)
	apply := map[string]bool{} // sections and keys to apply
	for _, k := range changed {
		rule, _ := reloadRuleFor(k)
		if rule.Reload {
			res.Applied = append(res.Applied, k)
			apply[k] = true
			apply[strings.SplitN(k, ".", 2)[0]] = true
		} else {
			res.NeedsRestart = append(res.NeedsRestart, k)
		}
	}
	// What needs a restart keeps its running value.
	keepRunning(&cfg, &old)
	if sl := cfg.Limits.SendLimit(); r.limiter == nil && apply["limits"] && (sl.Default != (sendlimit.Limits{}) || len(sl.Accounts) > 0) {
		res.Applied = slices.DeleteFunc(res.Applied, func(k string) bool { return strings.HasPrefix(k, "limits.") })
		res.NeedsRestart = append(res.NeedsRestart, "limits (mailgate started without sending limits)")
		cfg.Limits = old.Limits
		apply["limits"] = false
	}

	// Everything that can fail is prepared before anything changes; a
	// refusal releases what was prepared and applies nothing.
	var newGeo *geoip.Locator
	var newPw password.Policy
	abandon := func(err error) api.ReloadJSON {
		if newGeo != nil {
			newGeo.Close()
		}
		newPw.Breached.Close()
		res.Applied, res.NeedsRestart = []string{}, []string{}
		return refuse(err)
	}
	if apply["geoip.database"] || apply["geoip.format"] || apply["geoip.country_field"] {
		if cfg.GeoIP.Database != "" {
			newGeo, err = geoip.NewLocator(cfg.GeoIP.Database, geoip.Options{Format: cfg.GeoIP.Format, CountryField: cfg.GeoIP.CountryField}, r.log.With("component", "geoip"))
			if err != nil {
				return abandon(fmt.Errorf("geoip.database: %w", err))
			}
		}
	}
	if apply["dnsbl"] {
		if err := r.blocks.check(cfg.DNSBL); err != nil {
			return abandon(err)
		}
	}
	// The breached list is opened anew on every reload, so that a file
	// replaced by rename (a new download) is taken up.
	pwApply := r.pws != nil && (apply["password"] || cfg.Password.BreachedFile != "")
	if pwApply {
		if newPw, err = policyOf(cfg.Password); err != nil {
			return abandon(err)
		}
	}
	// The webhook keys and the owner template are read anew on every
	// reload while notifications are configured (a rotated key is taken
	// up); a file that cannot be read refuses the reload.
	var newNotes notify.Config
	notesApply := r.notes != nil && (apply["notify"] || apply["notifications"] || len(cfg.Notify) > 0 || cfg.Notifications.Owner.TemplateFile != "")
	if notesApply {
		if newNotes, err = r.notes.prepare(&cfg); err != nil {
			return abandon(err)
		}
	}
	var logDest bool
	if apply["log.decisions"] {
		if err := r.dw.Retarget(cfg.Log.Decisions); err != nil {
			return abandon(fmt.Errorf("log.decisions: %w", err))
		}
		logDest = true
	}

	// From here on nothing is refused.
	// Notifications first: what the parts below find (a DNSBL zone
	// failing its first health check) goes to the new targets.
	if notesApply {
		r.notes.reconfigure(&cfg, newNotes)
	}
	if apply["log.level"] {
		r.level.Set(logLevel(cfg.Log.Level))
	}
	if apply["policy"] {
		if err := r.book.SetFixed(ctx, now, fixed); err != nil {
			res.Warnings = append(res.Warnings, "policy: the rules could not be reloaded from the store, the old trusted and deny networks stay: "+err.Error())
			cfg.Policy = old.Policy
		}
	}
	if apply["dnsbl"] {
		if err := r.blocks.reconfigure(cfg.DNSBL); err != nil {
			res.Warnings = append(res.Warnings, err.Error())
			cfg.DNSBL = old.DNSBL
		}
	}
	if apply["messages"] {
		r.engine.SetMessages(policy.Messages(cfg.Messages))
	}
	if pwApply {
		r.pws.reconfigure(cfg.Password, newPw)
	}
	if apply["geoip"] {
		lookup := r.geo.lookup()
		if apply["geoip.database"] || apply["geoip.format"] || apply["geoip.country_field"] {
			lookup = r.geo.swap(newGeo)
		}
		r.engine.SetCountries(lookup, cfg.GeoIP.Countries())
		r.admin.SetGeoIP(lookup != nil)
	}
	if apply["bruteforce"] || notesApply {
		if err := r.tracker.Reconfigure(abuseConfig(&cfg), now); err != nil {
			// keepRunning left only what Reconfigure takes.
			res.Warnings = append(res.Warnings, "bruteforce: "+err.Error())
			cfg.BruteForce = old.BruteForce
		}
		r.engine.SetAbuse(cfg.BruteForce.Enabled, cfg.BruteForce.LoginTarpit, cfg.BruteForce.StaleTarpit)
	}
	if apply["relay"] && r.grants != nil {
		rc, err := cfg.Relay.RelayConfig()
		if err == nil {
			err = r.grants.t.Reconfigure(rc)
		}
		if err != nil {
			res.Warnings = append(res.Warnings, "relay: "+err.Error())
			cfg.Relay = old.Relay
		}
	}
	if apply["limits"] && r.limiter != nil {
		r.limiter.SetLimits(cfg.Limits.SendLimit())
	}
	if (apply["firewall"] || apply["policy"]) && r.fwall != nil {
		trusted, err := cfg.TrustedPrefixes()
		if err == nil {
			err = r.fwall.reconfigure(cfg.Firewall, trusted, now)
		}
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
			cfg.Firewall = old.Firewall
		}
	}
	if apply["dnsbl_server"] && r.dnsbl != nil {
		if err := r.dnsbl.reconfigure(cfg.DNSBLServer); err != nil {
			res.Warnings = append(res.Warnings, "dnsbl_server: "+err.Error())
			cfg.DNSBLServer = old.DNSBLServer
		}
	}
	r.cfg = cfg
	res.OK = true
	res.Warnings = append(res.Warnings, cfg.Warnings()...)
	for _, w := range cfg.Warnings() {
		r.log.Warn(w)
	}
	args := []any{"by", actor, "file", used, "applied", strings.Join(res.Applied, ",")}
	if logDest {
		args = append(args, "decisions", cfg.Log.Decisions)
	}
	r.log.Info("config reloaded", args...)
	if len(res.NeedsRestart) > 0 {
		r.log.Warn("config reloaded, but some changes apply only after a restart", "needs_restart", strings.Join(res.NeedsRestart, ","))
	}
	return res
}

// keepRunning copies into cfg the running values of the settings a
// reload cannot change, so that cfg is what runs after the reload.
func keepRunning(cfg, running *config.Config) {
	vc, vr := reflect.ValueOf(cfg).Elem(), reflect.ValueOf(running).Elem()
	walkConfig(vc.Type(), "", func(key string, index []int) {
		if rule, _ := reloadRuleFor(key); !rule.Reload {
			vc.FieldByIndex(index).Set(vr.FieldByIndex(index))
		}
	})
}

// errorLines splits a config error into its problems, one a line.
func errorLines(err error) []string {
	var ce *config.Error
	if errors.As(err, &ce) {
		var out []string
		for _, p := range ce.Problems {
			out = append(out, ce.File+": "+p.Error())
		}
		if len(out) > 0 {
			return out
		}
	}
	return strings.Split(strings.TrimSpace(err.Error()), "\n")
}

// geoHolder holds the running GeoIP database and the goroutine that
// reloads it when its file changes; a reload swaps both.
type geoHolder struct {
	log *slog.Logger

	mu   sync.Mutex
	loc  *geoip.Locator // nil: no database
	stop context.CancelFunc
	done chan struct{}
}

// current returns the database in use (nil: none).
func (g *geoHolder) current() *geoip.Locator {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.loc
}

// lookup returns the engine's lookup over the current database (nil
// when there is none).
func (g *geoHolder) lookup() policy.CountryLookup {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loc == nil {
		return nil
	}
	return countryLookup(g.loc)
}

// swap makes loc (nil: none) the database, starts watching its file and
// retires the old one, and returns the new lookup. In-flight lookups on
// the old database finish safely (geoip retires mapped files only when
// unused).
func (g *geoHolder) swap(loc *geoip.Locator) policy.CountryLookup {
	g.mu.Lock()
	old, oldStop, oldDone := g.loc, g.stop, g.done
	g.loc, g.stop, g.done = loc, nil, nil
	if loc != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			loc.Watch(ctx)
		}()
		g.stop, g.done = cancel, done
	}
	g.mu.Unlock()
	if oldStop != nil {
		oldStop()
		<-oldDone
	}
	if old != nil {
		old.Close()
	}
	if loc == nil {
		return nil
	}
	i := loc.Info()
	g.log.Info("geoip database loaded", "path", i.Path, "format", i.Format, "type", i.DatabaseType,
		"country_field", i.CountryField, "built", i.Built.Format(time.DateOnly))
	return countryLookup(loc)
}

// reopen re-reads the current database file (SIGHUP).
func (g *geoHolder) reopen() {
	g.mu.Lock()
	loc := g.loc
	g.mu.Unlock()
	if loc != nil {
		if err := loc.Reload(); err != nil {
			g.log.Error("geoip database not reloaded; the loaded one stays in use", "err", err)
		}
	}
}

func (g *geoHolder) close() { g.swap(nil) }

// cmdReload asks the daemon to re-read the config file it was started
// with (as SIGHUP and systemctl reload do). A refused config is an error:
// exit status 1, with its problems.
func cmdReload(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: reload takes no arguments (got %q)", errUsage, pos[0])
	}
	var res api.ReloadJSON
	c, err := cf.client()
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		// The file that names the admin socket does not parse: it is
		// (most likely) the daemon's own file, which the daemon would
		// refuse with the same errors. Nothing is sent.
		res = api.ReloadJSON{File: ce.File, Errors: errorLines(err), Applied: []string{}, NeedsRestart: []string{}, Warnings: []string{}}
	case err != nil:
		return err
	default:
		if res, err = c.Reload(ctx); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if *jsonOut {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		printReload(stdout, res)
	}
	if !res.OK {
		return errors.New("reload refused: the running config stays")
	}
	return nil
}

func printReload(w io.Writer, res api.ReloadJSON) {
	file := res.File
	if file == "" {
		file = "built-in defaults (no config file)"
	}
	if !res.OK {
		fmt.Fprintf(w, "%s: refused; the running config stays:\n", file)
		for _, e := range res.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
		return
	}
	switch {
	case len(res.Applied) == 0 && len(res.NeedsRestart) == 0:
		fmt.Fprintf(w, "%s: reloaded, nothing changed\n", file)
	case len(res.Applied) == 0:
		fmt.Fprintf(w, "%s: reloaded, nothing applied\n", file)
	default:
		fmt.Fprintf(w, "%s: reloaded; applied: %s\n", file, strings.Join(res.Applied, ", "))
	}
	if len(res.NeedsRestart) > 0 {
		fmt.Fprintf(w, "needs a restart: %s\n", strings.Join(res.NeedsRestart, ", "))
	}
	for _, m := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
}
