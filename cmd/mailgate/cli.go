package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	config, socket            *string
	server, tokenFile, caFile *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		config:    fs.String("config", "", "the config `FILE`, to find the admin socket (default "+config.DefaultPath+")"),
		socket:    fs.String("socket", "", "the `PATH` of the admin socket (overrides the config)"),
		server:    fs.String("server", "", "a node's admin TCP listener ([admin] listen) instead of the local socket: http://host:port (loopback only) or https://host:port (a TLS proxy in front of it)"),
		tokenFile: fs.String("token-file", "", "with --server: the `FILE` holding that node's [admin] token (one line, not readable by others); default: the MAILGATE_TOKEN environment variable"),
		caFile:    fs.String("ca-file", "", "with an https --server: the CA certificate `FILE` (PEM) that signed its certificate; default: the system's CAs"),
	}
}

// tokenEnv names the environment variable with the admin token for
// --server (a --token flag would show in ps).
const tokenEnv = "MAILGATE_TOKEN"

// maxCAFile bounds --ca-file.
const maxCAFile = 1 << 20

func (c clientFlags) client() (*api.Client, error) {
	if *c.server != "" {
		if *c.socket != "" {
			return nil, fmt.Errorf("%w: give --server or --socket, not both", errUsage)
		}
		return c.remote(os.Getenv(tokenEnv))
	}
	if *c.tokenFile != "" || *c.caFile != "" {
		return nil, fmt.Errorf("%w: --token-file and --ca-file go with --server (the local socket needs no token)", errUsage)
	}
	if *c.socket != "" {
		return api.NewUnixClient(*c.socket), nil
	}
	cfg, _, err := config.LoadOrDefault(*c.config)
	if errors.Is(err, fs.ErrPermission) {
		path := *c.config
		if path == "" {
			path = config.DefaultPath
		}
		if g := api.FileGroup(path); g != "" {
			return nil, fmt.Errorf("permission denied reading %s (it names the admin socket): run this as root, or as a member of the group %s (adduser $USER %s, then log in again)", path, g, g)
		}
		return nil, fmt.Errorf("permission denied reading %s (it names the admin socket): run this as root, or give --socket", path)
	}
	if err != nil {
		return nil, err
	}
	return api.NewUnixClient(cfg.Admin.Socket), nil
}

// remote is the client for --server, with the token from --token-file or
// envToken.
func (c clientFlags) remote(envToken string) (*api.Client, error) {
	u, err := parseServerURL(*c.server)
	if err != nil {
		return nil, fmt.Errorf("%w: --server: %v", errUsage, err)
	}
	var opt api.RemoteOptions
	switch {
	case *c.tokenFile != "":
		if opt.Token, err = readTokenFile(*c.tokenFile); err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
	case envToken != "":
		opt.Token = strings.TrimSpace(envToken)
	default:
		return nil, fmt.Errorf("%w: --server needs that node's [admin] token: give --token-file FILE or set %s", errUsage, tokenEnv)
	}
	if strings.ContainsAny(opt.Token, "\r\n\x00") || len(opt.Token) > 1024 {
		return nil, fmt.Errorf("%w: the token is not one line of at most 1024 bytes", errUsage)
	}
	if *c.caFile != "" {
		if u.Scheme != "https" {
			return nil, fmt.Errorf("%w: --ca-file goes with an https:// --server", errUsage)
		}
		if opt.RootCAs, err = readCAFile(*c.caFile); err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
	}
	return api.NewRemoteClient(u, opt), nil
}

// parseServerURL checks --server: http or https, a host and a port, no
// user, path, query or fragment; plain http only to a loopback address,
// because the token would cross the network in clear text.
func parseServerURL(s string) (*url.URL, error) {
	if len(s) > 2048 {
		return nil, errors.New("longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL (http://127.0.0.1:4080 or https://host:port)", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: want http://host:port or https://host:port", s)
	case u.Host == "" || u.Port() == "":
		return nil, fmt.Errorf("%q: want a host and a port, e.g. http://127.0.0.1:4080", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q: no user or password in the URL (the token comes from --token-file or %s)", s, tokenEnv)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%q: give only the scheme, host and port", s)
	}
	if u.Scheme == "http" {
		if a, err := netip.ParseAddr(u.Hostname()); (err != nil && u.Hostname() != "localhost") || (err == nil && !a.IsLoopback()) {
			return nil, fmt.Errorf("%q: plain http would send the token in clear text to another host; use https:// (a TLS proxy in front of [admin] listen) or an SSH tunnel to a loopback port", s)
		}
	}
	u.Path = ""
	return u, nil
}

// maxTokenFile bounds --token-file.
const maxTokenFile = 1024

// readTokenFile reads --token-file: a regular file other users cannot
// read, one line (a final newline is dropped).
func readTokenFile(path string) (string, error) {
	return config.ReadLineFile(path, "admin token", maxTokenFile)
}

// readCAFile reads a PEM file of CA certificates.
func readCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCAFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCAFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

func cmdConfigCheck(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	path := fs.String("config", "", "the config `FILE` (default "+config.DefaultPath+")")
	connect := fs.Bool("connect", false, "also connect to the PostgreSQL store (store.driver = postgres) as serve would and report its schema version; writes nothing")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, used, err := config.LoadOrDefault(*path)
	if err != nil {
		return err
	}
	if used == "" {
		fmt.Fprintf(stdout, "no config file at %s; the built-in defaults are valid\n", config.DefaultPath)
	} else {
		fmt.Fprintf(stdout, "%s: ok\n", used)
	}
	if err := checkDovecotKey(&cfg, stdout); err != nil {
		return err
	}
	if cfg.Password.BreachedFile != "" {
		// Opened and checked as serve will: a file that is not a sorted
		// Pwned Passwords SHA-1 list would stop the start.
		p, err := policyOf(cfg.Password)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password.breached_file: %s: ok (%d bytes)\n", cfg.Password.BreachedFile, p.Breached.Size())
		p.Breached.Close()
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if *connect {
		return checkStoreConnect(ctx, cfg.Store, stdout)
	}
	return nil
}

// pgCheckTimeout bounds config check --connect.
const pgCheckTimeout = 15 * time.Second

// checkStoreConnect connects to a PostgreSQL store and prints its schema
// version, or returns why it cannot (never the DSN).
func checkStoreConnect(ctx context.Context, c config.Store, stdout io.Writer) error {
	if c.Driver != "postgres" {
		fmt.Fprintf(stdout, "store: sqlite (%s): --connect checks a PostgreSQL store; nothing to connect to\n", c.Path)
		return nil
	}
	var opt store.PostgresOptions
	if c.PasswordFile != "" {
		pw, err := config.ReadPasswordFile(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("store.password_file: %w", err)
		}
		opt.Password = pw
	}
	ctx, cancel := context.WithTimeout(ctx, pgCheckTimeout)
	defer cancel()
	r, err := store.CheckPostgres(ctx, c.DSN, opt)
	var u *store.Unavailable
	switch {
	case errors.As(err, &u):
		return fmt.Errorf("store: cannot connect to %s: %s", u.Store, u.Cause())
	case err != nil:
		return fmt.Errorf("store: %w", err)
	}
	fmt.Fprintf(stdout, "store: PostgreSQL %s: connected (server %s)\n", r.Name, r.ServerVersion)
	switch {
	case r.Schema == 0:
		fmt.Fprintf(stdout, "store: no mailgate schema yet: serve creates it (version %d) at its first start; the role needs CREATE on the database\n", r.Want)
	case r.Schema > r.Want:
		return fmt.Errorf("store: schema version %d is newer than this mailgate knows (%d): upgrade mailgate", r.Schema, r.Want)
	case r.Schema < r.Want:
		fmt.Fprintf(stdout, "store: schema version %d; serve will migrate it to %d at its next start\n", r.Schema, r.Want)
	default:
		fmt.Fprintf(stdout, "store: schema version %d (current)\n", r.Schema)
	}
	return nil
}

func cmdRuleAdd(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	account := fs.String("account", "", "login, @domain or * (the rule's account)")
	global := fs.Bool("global", false, "a global rule: --allow is a trusted network, --deny the global deny list")
	service := fs.String("service", "all", "imap, pop3, smtp (also covers submission), submission, sieve or all")
	allow := fs.Bool("allow", false, "allow the address or countries (an allow list for the account and service)")
	deny := fs.Bool("deny", false, "deny the address or countries")
	extra := fs.Bool("extra", false, "an exception to the global country list: the account may also log in from this address or these countries (does not restrict the account)")
	ip := fs.String("ip", "", "an IP address, a CIDR network, or none (with --allow: closes the service)")
	country := fs.String("country", "", "country codes instead of --ip, e.g. DE or DE,AT (needs [geoip] database)")
	comment := fs.String("comment", "", "why the rule exists")
	expires := fs.String("expires", "", "when the rule ends: a duration (90m, 12h, 7d, 2w), a date (2026-12-31, through that day, UTC) or an RFC 3339 time")
	jsonOut := fs.Bool("json", false, "print the added rule as JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: rule add: unexpected argument %q", errUsage, pos[0])
	}

	r := api.RuleJSON{Scope: "account", Account: *account, Service: *service, Comment: *comment}
	switch {
	case *global && *account != "":
		return fmt.Errorf("%w: rule add: give --account or --global, not both", errUsage)
	case *global:
		r.Scope = "global"
	case *account == "":
		return fmt.Errorf("%w: rule add: --account is required (a login, @domain or *), or --global", errUsage)
	}
	switch {
	case btoi(*allow)+btoi(*deny)+btoi(*extra) != 1:
		return fmt.Errorf("%w: rule add: give exactly one of --allow, --deny and --extra", errUsage)
	case *allow:
		r.Action = "allow"
	case *deny:
		r.Action = "deny"
	default:
		r.Action = "extra"
	}
	switch {
	case *ip != "" && *country != "":
		return fmt.Errorf("%w: rule add: give --ip or --country, not both", errUsage)
	case *country != "":
		cc, err := rules.ParseCountries(*country)
		if err != nil {
			return fmt.Errorf("%w: rule add: --country: %v", errUsage, err)
		}
		r.Match = rules.CountryPrefix + cc
	case *ip == "":
		return fmt.Errorf("%w: rule add: --ip is required (an IP address, a CIDR network, or none), or --country", errUsage)
	default:
		if _, err := rules.ParseMatch(*ip); err != nil {
			return fmt.Errorf("%w: rule add: --ip: %v", errUsage, err)
		}
		r.Match = *ip
	}
	if _, err := rules.ParseService(*service); err != nil {
		return fmt.Errorf("%w: rule add: --service: %v", errUsage, err)
	}
	if *expires != "" {
		t, err := parseExpiry(*expires, time.Now())
		if err != nil {
			return fmt.Errorf("%w: rule add: --expires: %v", errUsage, err)
		}
		r.Expires = &t
	}
	// Catch what the server would refuse, with the flag's name.
	if _, err := r.Rule(); err != nil {
		names := flagNames
		if *country != "" {
			names = countryFlagNames
		}
		return fmt.Errorf("%w: rule add: %s", errUsage, names.Replace(err.Error()))
	}

	c, err := cf.client()
	if err != nil {
		return err
	}
	added, err := c.AddRule(ctx, r)
	if err != nil {
		return fmt.Errorf("rule add: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, added)
	}
	fmt.Fprintf(stdout, "added rule %d: %s\n", added.ID, describeRule(&added))
	return nil
}

// flagNames maps field names in validation errors to the flags that set them.
var flagNames = strings.NewReplacer("match: ", "--ip: ", "account: ", "--account: ", "service: ", "--service: ", "comment: ", "--comment: ", "action: ", "")

var countryFlagNames = strings.NewReplacer("match: ", "--country: ", "account: ", "--account: ", "service: ", "--service: ", "comment: ", "--comment: ", "action: ", "")

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseExpiry reads --expires: a duration with d and w units allowed, a
// date (the rule lasts through that day, UTC), or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return t, fmt.Errorf("%q is in the past", s)
		}
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		t = t.AddDate(0, 0, 1)
		if !t.After(now) {
			return t, fmt.Errorf("%q is in the past", s)
		}
		return t, nil
	}
	mult := time.Duration(0)
	num := s
	switch {
	case strings.HasSuffix(s, "d"):
		mult, num = 24*time.Hour, strings.TrimSuffix(s, "d")
	case strings.HasSuffix(s, "w"):
		mult, num = 7*24*time.Hour, strings.TrimSuffix(s, "w")
	}
	var d time.Duration
	if mult != 0 {
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is neither a duration (90m, 12h, 7d, 2w), a date (2026-12-31) nor an RFC 3339 time", s)
		}
		d = time.Duration(n * float64(mult))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, fmt.Errorf("%q is neither a duration (90m, 12h, 7d, 2w), a date (2026-12-31) nor an RFC 3339 time", s)
		}
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%q is not a positive duration", s)
	}
	return now.Add(d).Truncate(time.Second), nil
}

func describeRule(r *api.RuleJSON) string {
	var b strings.Builder
	if r.Scope == "global" {
		if r.Action == "allow" {
			b.WriteString("trusted network ")
		} else {
			b.WriteString("global deny ")
		}
		b.WriteString(r.Match)
		if r.Service != "all" {
			b.WriteString(" for " + r.Service)
		}
	} else {
		fmt.Fprintf(&b, "%s %s %s %s", r.Account, r.Service, r.Action, r.Match)
	}
	if r.Expires != nil {
		b.WriteString(", until " + r.Expires.Format(time.RFC3339))
	}
	if r.Comment != "" {
		b.WriteString(" (" + r.Comment + ")")
	}
	return b.String()
}

func cmdRuleList(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	account := fs.String("account", "", "only the rules of this account (login, @domain or *)")
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: rule list: unexpected argument %q", errUsage, pos[0])
	}
	if *account != "" {
		if _, err := rules.NormalizeAccount(*account); err != nil {
			return fmt.Errorf("%w: rule list: --account: %v", errUsage, err)
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	rs, err := c.Rules(ctx, *account)
	if err != nil {
		return fmt.Errorf("rule list: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, rs)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACCOUNT\tSERVICE\tACTION\tMATCH\tEXPIRES\tCOMMENT")
	for _, r := range rs {
		id := strconv.FormatInt(r.ID, 10)
		if r.Source != "" {
			id = r.Source
		}
		acct := r.Account
		if r.Scope == "global" {
			acct = "(global)"
		}
		exp := "-"
		if r.Expires != nil {
			exp = r.Expires.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, acct, r.Service, r.Action, r.Match, exp, r.Comment)
	}
	return tw.Flush()
}

func cmdRuleRemove(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print the removed rules as a JSON array")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: rule rm: give the id of the rule to remove (see 'mailgate rule list')", errUsage)
	}
	var ids []int64
	for _, p := range pos {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%w: rule rm: %q is not a rule id (a positive number)", errUsage, p)
		}
		ids = append(ids, id)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	removed := []api.RuleJSON{}
	for _, id := range ids {
		r, err := c.RemoveRule(ctx, id)
		if err != nil {
			if *jsonOut && len(removed) > 0 {
				printJSON(stdout, removed)
			}
			return fmt.Errorf("rule rm %d: %w", id, err)
		}
		if !*jsonOut {
			fmt.Fprintf(stdout, "removed rule %d: %s\n", r.ID, describeRule(&r))
		}
		removed = append(removed, r)
	}
	if *jsonOut {
		return printJSON(stdout, removed)
	}
	return nil
}

func cmdExplain(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	account := fs.String("account", "", "the login")
	ip := fs.String("ip", "", "the client's address")
	service := fs.String("service", "", "imap, pop3, smtp, submission or sieve")
	pwhash := fs.String("pwhash", "", "the password hash tried (Dovecot's pwhash from a log or capture), to check for a stale client")
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: explain: unexpected argument %q", errUsage, pos[0])
	}
	if *ip == "" || *service == "" {
		return fmt.Errorf("%w: explain: --ip and --service are required (and --account for account rules)", errUsage)
	}
	if _, err := rules.ParseAddr(*ip); err != nil {
		return fmt.Errorf("%w: explain: --ip: %q is not an IP address", errUsage, *ip)
	}
	if s, err := rules.ParseService(*service); err != nil || s == rules.AllServices {
		return fmt.Errorf("%w: explain: --service: want one of imap, pop3, smtp, submission, sieve (got %q)", errUsage, *service)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	e, err := c.Explain(ctx, api.ExplainRequest{Account: *account, IP: *ip, Service: *service, PwHash: *pwhash})
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if *jsonOut {
		if err := printJSON(stdout, e); err != nil {
			return err
		}
		return explainStatus(e.Verdict)
	}
	who := e.Account
	if who == "" {
		who = "(no login)"
	}
	fmt.Fprintf(stdout, "%s over %s from %s: %s (%s)\n", who, e.Service, e.IP, strings.ToUpper(e.Verdict), e.Reason)
	fmt.Fprintf(stdout, "  why: %s\n", e.Explanation)
	if e.Country != "" {
		fmt.Fprintf(stdout, "  country: %s\n", e.Country)
	}
	if e.Delay != "" {
		fmt.Fprintf(stdout, "  the attempt is held for %s\n", e.Delay)
	}
	if e.Message != "" {
		fmt.Fprintf(stdout, "  the user sees: %q\n", e.Message)
	}
	if b := e.BanDetail; b != nil {
		fmt.Fprintf(stdout, "  ban %d: %s, since %s by %s; lift it with: mailgate ban rm %d\n",
			b.ID, describeBan(b), b.Created.Format(time.RFC3339), b.CreatedBy, b.ID)
	}
	if e.RuleDetail != nil {
		r := e.RuleDetail
		fmt.Fprintf(stdout, "  rule %d: %s, added %s by %s\n", r.ID, describeRule(r), r.Created.Format(time.RFC3339), r.CreatedBy)
	}
	if err := printDNSBL(stdout, e.DNSBL); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "checks, in order:")
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	for _, ch := range e.Checks {
		rule := ""
		if ch.RuleID != 0 {
			rule = "rule " + strconv.FormatInt(ch.RuleID, 10)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", ch.Name, ch.Result, rule, ch.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := e.Counters; c != nil {
		fmt.Fprintf(stdout, "brute-force counters now: %d failures from this address, %d for this login from %d addresses, "+
			"%d for this login from this address with %d different passwords, %d logins failing from this address\n",
			c.AddrFailures, c.LoginFailures, c.LoginAddrs, c.PairFailures, c.PairHashes, c.AddrLogins)
		fmt.Fprintf(stdout, "slow windows: %d failures from this address in the last hour, %d in the last day; "+
			"%d for this login from addresses it never logged in from in the last hour, %d in the last day\n",
			c.AddrHour, c.AddrDay, c.LoginHour, c.LoginDay)
	}
	return explainStatus(e.Verdict)
}

// explainStatus is explain's outcome: nil for "allow", exitRefused (exit
// status 3) for any other verdict, so scripts can test it.
func explainStatus(verdict string) error {
	if verdict == "allow" {
		return nil
	}
	return exitRefused
}

func cmdAudit(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	limit := fs.Int("limit", 50, "how many entries, newest first")
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: audit: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	es, err := c.Audit(ctx, *limit)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, es)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tWHO\tWHAT\tOF\tDETAIL")
	for _, e := range es {
		id := e.RuleID
		if e.Object == "ban" {
			id = e.BanID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %d\t%s\n", e.At.Format(time.RFC3339), e.Actor, e.Op, e.Object, id, e.Detail)
	}
	return tw.Flush()
}

// printJSON prints v indented, with every time to the second: the API
// sends RFC 3339 with the fractions Go keeps; the CLI shows one format,
// RFC 3339 in seconds, in text and JSON alike.
func printJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(jsonFraction.ReplaceAll(b.Bytes(), []byte(`"$1$2"`)))
	return err
}

// jsonFraction matches a JSON string that is an RFC 3339 time with
// fractional seconds.
var jsonFraction = regexp.MustCompile(`"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+(Z|[+-]\d\d:\d\d)"`)
