package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"mailgate/internal/dnsbld"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
)

// Limits checked by Validate.
const (
	MinBodyBytes   = 1 << 10
	MaxBodyBytes   = 1 << 20
	MinTokenLen    = 16
	MaxMessageLen  = 512
	maxUnixPathLen = 107 // sun_path is 108 bytes on Linux, with the NUL
	maxPathLen     = 4095
)

var logLevels = []string{"debug", "info", "warn", "error"}

// Validate checks every value and reports every problem at once, each as a
// *KeyError naming its key path, joined in an *Error.
func (c *Config) Validate() error {
	var e Error
	bad := func(key, format string, args ...any) {
		e.add(&KeyError{Key: key, Err: fmt.Errorf(format, args...)})
	}

	if !slices.Contains(logLevels, c.Log.Level) {
		bad("log.level", "%q is not a level (want debug, info, warn or error)", c.Log.Level)
	}
	if c.Log.Decisions == "" {
		bad("log.decisions", "empty (want stdout, stderr, off or a file path)")
	}

	switch c.Store.Driver {
	case "sqlite":
		for key, set := range map[string]bool{"store.dsn": c.Store.DSN != "", "store.password_file": c.Store.PasswordFile != "", "store.max_conns": c.Store.MaxConns != 0} {
			if set {
				bad(key, "only for driver = \"postgres\" (driver is sqlite)")
			}
		}
	case "postgres":
		if err := checkPostgresDSN(c.Store.DSN); err != nil {
			bad("store.dsn", "%v", err)
		}
		if c.Store.PasswordFile != "" {
			if err := checkSecretFile(c.Store.PasswordFile); err != nil {
				bad("store.password_file", "%v", err)
			}
		}
		if c.Store.MaxConns < 0 || c.Store.MaxConns > 100 {
			bad("store.max_conns", "%d is out of range (want 0 to 100)", c.Store.MaxConns)
		}
	default:
		bad("store.driver", "%q is not a store driver (want sqlite or postgres)", c.Store.Driver)
	}
	if c.Store.Path == "" {
		bad("store.path", "empty (want the SQLite database file; with postgres, a file in the directory for mailgate's local files)")
	}

	switch {
	case c.Admin.Socket == "":
		bad("admin.socket", "empty (want a unix socket path, e.g. /run/mailgate/admin.sock)")
	case len(c.Admin.Socket) > maxUnixPathLen:
		bad("admin.socket", "longer than %d bytes, the limit for a unix socket path", maxUnixPathLen)
	case strings.ContainsRune(c.Admin.Socket, 0):
		bad("admin.socket", "contains a NUL byte")
	}
	if c.Console.Listen != "" {
		if err := checkHostPort(c.Console.Listen); err != nil {
			bad("console.listen", "%v", err)
		}
	}
	if c.Console.TokenSignIn && c.Admin.Token == "" {
		bad("console.token_sign_in", "needs admin.token")
	}
	if d := c.Console.SessionTTL; d < 5*time.Minute || d > 7*24*time.Hour {
		bad("console.session_ttl", "%v is not from 5m to 7d", d)
	}
	if n := c.Console.SignInFailures; n < 1 || n > 1000 {
		bad("console.signin_failures", "%d is not from 1 to 1000", n)
	}
	if d := c.Console.SignInWindow; d < time.Minute || d > 24*time.Hour {
		bad("console.signin_window", "%v is not from 1m to 24h", d)
	}
	if u := c.Console.JournalUnit; u != "" && (len(u) > 256 || strings.HasPrefix(u, "-") || strings.ContainsAny(u, " \t\n\x00/")) {
		bad("console.journal_unit", "%q is not a systemd unit name", u)
	}
	if strings.ContainsRune(c.Console.UsersFile, 0) {
		bad("console.users_file", "contains a NUL byte")
	}
	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v", err)
		}
	}
	if c.Admin.Listen != "" {
		if err := checkHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%v", err)
		}
		if len(c.Admin.Token) < MinTokenLen {
			bad("admin.token", "admin.listen is set, so a token of at least %d characters is required (e.g. from: openssl rand -hex 24)", MinTokenLen)
		}
	}
	if err := checkSecret(c.Admin.Token); err != nil {
		bad("admin.token", "%v", err)
	}

	c.BruteForce.validate(bad)
	c.Cluster.validate(bad)

	if c.Dovecot.Enabled {
		if err := checkHostPort(c.Dovecot.Listen); err != nil {
			bad("dovecot.listen", "%v", err)
		}
	}
	if err := checkSecret(c.Dovecot.APIKey); err != nil {
		bad("dovecot.api_key", "%v", err)
	} else if c.Dovecot.APIKey != "" && len(c.Dovecot.APIKey) < MinTokenLen {
		bad("dovecot.api_key", "shorter than %d characters (e.g. from: openssl rand -hex 32); or leave it empty for a generated key in api_key_file", MinTokenLen)
	}
	switch f := c.Dovecot.APIKeyFile; {
	case f == "":
	case c.Dovecot.APIKey != "":
		bad("dovecot.api_key_file", "set, and so is api_key: set one of them")
	case len(f) > maxPathLen:
		bad("dovecot.api_key_file", "longer than %d bytes", maxPathLen)
	case strings.ContainsRune(f, 0) || strings.ContainsAny(f, "\r\n"):
		bad("dovecot.api_key_file", "contains a NUL byte or a line break")
	case strings.HasSuffix(f, "/"):
		bad("dovecot.api_key_file", "%q names a directory, not a file", f)
	}
	if n := c.Dovecot.MaxBodyBytes; n < MinBodyBytes || n > MaxBodyBytes {
		bad("dovecot.max_body_bytes", "%d is out of range (want %d to %d)", n, MinBodyBytes, MaxBodyBytes)
	}

	c.GeoIP.validate(bad)
	c.Nginx.validate(bad)
	c.Postfix.validate(bad)
	c.Relay.validate(bad)
	c.Limits.validate(bad)
	c.Password.validate(bad)
	c.Firewall.validate(bad)
	c.DNSBL.validate(bad)
	c.DNSBLServer.validate(bad, &e)
	c.Logs.validate(bad)
	c.Notifications.validate(c.Notify, bad)
	c.checkListeners(bad)

	_, errs := parseNetworks("policy.trusted_networks", c.Policy.TrustedNetworks)
	for _, err := range errs {
		e.add(err)
	}
	_, errs = parseNetworks("policy.deny_networks", c.Policy.DenyNetworks)
	for _, err := range errs {
		e.add(err)
	}

	keys := make([]string, 0, len(c.Messages))
	for k := range c.Messages {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		key := toml.Key{"messages", k}.String()
		if err := checkMessageReason(k); err != nil {
			e.add(&KeyError{Key: key, Err: err})
		}
		if err := checkMessage(c.Messages[k]); err != nil {
			e.add(&KeyError{Key: key, Err: err})
		}
	}
	return e.err()
}

// TrustedPrefixes returns policy.trusted_networks parsed. Its error names
// the first bad entry; Validate reports them all.
func (c *Config) TrustedPrefixes() ([]netip.Prefix, error) {
	ps, errs := parseNetworks("policy.trusted_networks", c.Policy.TrustedNetworks)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return ps, nil
}

// DenyPrefixes returns policy.deny_networks parsed. Its error names the
// first bad entry; Validate reports them all.
func (c *Config) DenyPrefixes() ([]netip.Prefix, error) {
	ps, errs := parseNetworks("policy.deny_networks", c.Policy.DenyNetworks)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return ps, nil
}

func parseNetworks(key string, list []string) ([]netip.Prefix, []error) {
	var errs []error
	ps := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		k := key + "[" + strconv.Itoa(i) + "]"
		p, err := rules.ParseMatch(s)
		switch {
		case err != nil:
			errs = append(errs, &KeyError{Key: k, Err: err})
		case !p.IsValid():
			errs = append(errs, &KeyError{Key: k, Err: errors.New("none matches no address and has no place in a global list; remove the entry")})
		default:
			ps = append(ps, p)
		}
	}
	return ps, errs
}

// checkHostPort checks a listen address: host:port with a numeric port,
// the host an IP address, a host name or empty (every address).
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:4001 or [::1]:4001): %w", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// checkSecret checks a token or API key, which travels in an HTTP header.
func checkSecret(s string) error {
	if strings.TrimSpace(s) != s {
		return errors.New("has leading or trailing space, which HTTP headers drop")
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return errors.New("has a control character")
		}
	}
	return nil
}

// checkMessageReason checks that a messages key is a reason that refuses.
func checkMessageReason(k string) error {
	r, ok := policy.ParseReason(k)
	if !ok {
		return fmt.Errorf("unknown reason code (want one of %s)", strings.Join(denyReasons(), ", "))
	}
	if !refuses(r) {
		return fmt.Errorf("reason %s never refuses a login, so its message would never be shown (want one of %s)", k, strings.Join(denyReasons(), ", "))
	}
	return nil
}

// refuses reports whether a verdict with reason r can refuse a login.
func refuses(r policy.Reason) bool {
	switch r {
	case policy.ReasonDefault, policy.ReasonTrusted, policy.ReasonAccountAllow, policy.ReasonRelayPermit:
		return false
	}
	return true
}

func denyReasons() []string {
	var out []string
	for _, r := range policy.Reasons() {
		if refuses(r) {
			out = append(out, r.String())
		}
	}
	return out
}

var placeholders = []string{"{service}", "{ip}", "{login}", "{country}", "{zones}"}

// checkMessage checks a user-visible text: it goes into a single protocol
// line, so it has a length bound and no line breaks.
func checkMessage(m string) error {
	if len(m) > MaxMessageLen {
		return fmt.Errorf("longer than %d bytes", MaxMessageLen)
	}
	if strings.ContainsAny(m, "\r\n") {
		return errors.New("contains a line break; the text must fit on one protocol line")
	}
	for _, c := range []byte(m) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return errors.New("contains a control character")
		}
	}
	rest := m
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		rest = rest[i:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			break
		}
		if p := rest[:j+1]; !slices.Contains(placeholders, p) && isWord(p[1:j]) {
			return fmt.Errorf("unknown placeholder %s (want {service}, {ip}, {login}, {country} or {zones})", p)
		}
		rest = rest[1:]
	}
	return nil
}

// isWord reports whether s looks like a placeholder name, so that braces
// in ordinary text ("{}" or "{ see below }") are left alone.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validate checks the brute-force settings with the tracker's own rules
// (internal/abuse names the keys as this file does), plus what only the
// doors care about.
func (b *BruteForce) validate(bad func(key, format string, args ...any)) {
	if err := b.Abuse().Validate(); err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			key, msg, _ := strings.Cut(e.Error(), ": ")
			bad("bruteforce."+key, "%s", msg)
		}
	}
	// A tarpit is Dovecot's own wait before it checks the password; mail
	// clients give up long before five minutes.
	if b.LoginTarpit > 5*time.Minute {
		bad("bruteforce.login_tarpit", "%v is longer than 5m; clients give up long before", b.LoginTarpit)
	}
	if b.StaleTarpit > 5*time.Minute {
		bad("bruteforce.stale_tarpit", "%v is longer than 5m; clients give up long before", b.StaleTarpit)
	}
}

func (g *GeoIP) validate(bad func(key, format string, args ...any)) {
	switch g.Format {
	case "auto", "mmdb", "ip2location":
	default:
		bad("geoip.format", "%q is not a format (want auto, mmdb or ip2location)", g.Format)
	}
	if g.CountryField != "" && (strings.HasPrefix(g.CountryField, ".") || strings.HasSuffix(g.CountryField, ".") || strings.Contains(g.CountryField, "..")) {
		bad("geoip.country_field", "%q is not a dotted path (e.g. country.iso_code)", g.CountryField)
	}
	for _, k := range []struct {
		key  string
		list []string
	}{{"geoip.allow_countries", g.AllowCountries}, {"geoip.deny_countries", g.DenyCountries}} {
		for i, c := range k.list {
			if _, err := rules.ParseCountry(c); err != nil {
				bad(k.key+"["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
	}
	if len(g.AllowCountries) > 0 && len(g.DenyCountries) > 0 {
		bad("geoip.deny_countries", "set either allow_countries or deny_countries, not both")
	}
	for key, v := range map[string]string{"geoip.private": g.Private, "geoip.unknown": g.Unknown} {
		if _, ok := policy.ParseCountryOutcome(v); !ok {
			bad(key, "%q is not an outcome (want allow, deny or list)", v)
		}
	}
	if g.Database == "" && (len(g.AllowCountries) > 0 || len(g.DenyCountries) > 0) {
		bad("geoip.database", "empty, but a country list is set: country rules need a database file")
	}
}

// Countries returns the global country list for the engine. Call it on a
// validated config.
func (g *GeoIP) Countries() policy.CountryPolicy {
	var p policy.CountryPolicy
	if len(g.AllowCountries) > 0 {
		p.Allow, _ = rules.ParseCountries(strings.Join(g.AllowCountries, ","))
	}
	if len(g.DenyCountries) > 0 {
		p.Deny, _ = rules.ParseCountries(strings.Join(g.DenyCountries, ","))
	}
	p.Private, _ = policy.ParseCountryOutcome(g.Private)
	p.Unknown, _ = policy.ParseCountryOutcome(g.Unknown)
	return p
}

// NginxProtocols are the protocols nginx's mail proxy speaks.
var nginxProtocols = []string{"imap", "pop3", "smtp"}

func (n *Nginx) validate(bad func(key, format string, args ...any)) {
	if n.Enabled {
		if n.Unix() {
			if err := checkSocketPath(n.Listen); err != nil {
				bad("nginx.listen", "%v", err)
			}
		} else if err := checkHostPort(n.Listen); err != nil {
			bad("nginx.listen", "%v", err)
		} else if n.Secret == "" {
			bad("nginx.secret", "empty, but nginx.listen is TCP, where any local process can reach the door: it could have passwords checked from a made-up client address, and get any address or login banned. Set a secret (openssl rand -hex 24) and auth_http_header X-Auth-Key \"<secret>\"; in nginx, or listen on a unix socket (docs/nginx.md)")
		}
	}
	if n.SocketGroup != "" && !validGroup(n.SocketGroup) {
		bad("nginx.socket_group", "%q is not a group name or number", n.SocketGroup)
	}
	if !validHeaderName(n.SecretHeader) {
		bad("nginx.secret_header", "%q is not an HTTP header name", n.SecretHeader)
	}
	if err := checkSecret(n.Secret); err != nil {
		bad("nginx.secret", "%v", err)
	} else if n.Secret != "" && len(n.Secret) < MinTokenLen {
		bad("nginx.secret", "shorter than %d characters (e.g. from: openssl rand -hex 24)", MinTokenLen)
	}
	switch n.VerifyWith {
	case "dovecot":
		if n.DovecotAuth == "" {
			bad("nginx.dovecot_auth", "empty (want host:port of Dovecot's auth inet_listener, or a unix socket path)")
		} else if !strings.HasPrefix(n.DovecotAuth, "/") {
			if err := checkHostPort(n.DovecotAuth); err != nil {
				bad("nginx.dovecot_auth", "%v", err)
			}
		} else if len(n.DovecotAuth) > maxUnixPathLen {
			bad("nginx.dovecot_auth", "longer than %d bytes, the limit for a unix socket path", maxUnixPathLen)
		}
	case "imap":
		if err := checkHostPort(n.IMAPVerify); err != nil {
			bad("nginx.imap_verify", "%v", err)
		}
	default:
		bad("nginx.verify_with", "%q is not a method (want dovecot or imap)", n.VerifyWith)
	}
	for i, p := range n.Verify {
		if !slices.Contains(nginxProtocols, p) {
			bad("nginx.verify["+strconv.Itoa(i)+"]", "%q is not a protocol nginx proxies (want imap, pop3 or smtp)", p)
		}
	}
	for _, b := range []struct{ key, v string }{
		{"nginx.imap_backend", n.IMAPBackend}, {"nginx.pop3_backend", n.POP3Backend}, {"nginx.smtp_backend", n.SMTPBackend},
	} {
		if b.v == "" {
			continue
		}
		if _, err := netip.ParseAddrPort(b.v); err != nil {
			bad(b.key, "%q is not ip:port (nginx needs an IP address here, e.g. 127.0.0.1:143 or [::1]:143)", b.v)
		}
	}
	if n.FailWait < 0 || n.FailWait > time.Minute {
		bad("nginx.fail_wait", "%v is out of range (want 0 to 1m)", n.FailWait)
	}
	if n.MaxWaitAttempts < 1 || n.MaxWaitAttempts > 100 {
		bad("nginx.max_wait_attempts", "%d is out of range (want 1 to 100)", n.MaxWaitAttempts)
	}
	if !validSMTPCode(n.SMTPErrorCode) {
		bad("nginx.smtp_error_code", "%q is not an SMTP failure code (want e.g. 535 5.7.8)", n.SMTPErrorCode)
	}
	if err := checkMessage(n.FailMessage); err != nil || n.FailMessage == "" {
		if err == nil {
			err = errors.New("empty")
		}
		bad("nginx.fail_message", "%v", err)
	}
	if n.VerifyTimeout < time.Second || n.VerifyTimeout > time.Minute {
		bad("nginx.verify_timeout", "%v is out of range (want 1s to 1m)", n.VerifyTimeout)
	}
}

// Backends returns the configured backends by protocol. Call it on a
// validated config.
func (n *Nginx) Backends() map[string]netip.AddrPort {
	m := map[string]netip.AddrPort{}
	for p, v := range map[string]string{"imap": n.IMAPBackend, "pop3": n.POP3Backend, "smtp": n.SMTPBackend} {
		if ap, err := netip.ParseAddrPort(v); err == nil {
			m[p] = ap
		}
	}
	return m
}

// VerifySet returns the protocols whose passwords are checked; smtp is
// always among them.
func (n *Nginx) VerifySet() map[string]bool {
	m := map[string]bool{"smtp": true}
	for _, p := range n.Verify {
		m[p] = true
	}
	return m
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validSMTPCode checks "535 5.7.8": a 4xx or 5xx reply code and an
// enhanced status code of the same class.
func validSMTPCode(s string) bool {
	code, enh, ok := strings.Cut(s, " ")
	if !ok || len(code) != 3 || (code[0] != '4' && code[0] != '5') || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return false
	}
	parts := strings.Split(enh, ".")
	if len(parts) != 3 || parts[0] != code[:1] {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return false
		}
	}
	return true
}

// Bounds of the [relay], [postfix] and [limits] sections.
const (
	minRelayTTL       = time.Second
	maxRelayTTL       = 30 * 24 * time.Hour
	maxSharedLogins   = 1000
	maxSharedWindow   = 30 * 24 * time.Hour
	maxNeverNetworks  = 256
	maxPermits        = 10_000_000
	maxIdleTimeout    = 24 * time.Hour
	maxPostfixConns   = 100_000
	maxSendLimit      = 10_000_000
	maxSendAccounts   = 10_000_000
	maxPolicyContext  = 100
	maxGroupNameLen   = 32
	relayServiceNames = "imap, pop3 or sieve"
)

func (r *Relay) validate(bad func(key, format string, args ...any)) {
	if r.TTL < minRelayTTL || r.TTL > maxRelayTTL {
		bad("relay.ttl", "%v is out of range (want 1s to 720h)", r.TTL)
	}
	if len(r.Services) == 0 {
		bad("relay.services", "empty (want the services whose logins grant permits, e.g. [\"imap\", \"pop3\"])")
	}
	seen := map[rules.Service]int{}
	for i, name := range r.Services {
		key := "relay.services[" + strconv.Itoa(i) + "]"
		svc, err := rules.ParseService(name)
		switch {
		case err != nil:
			bad(key, "%q is not a service (want %s)", name, relayServiceNames)
		case svc == rules.AllServices:
			bad(key, "%q names every service, smtp included; list the services that grant permits (%s)", name, relayServiceNames)
		case svc == rules.SMTP || svc == rules.Submission:
			bad(key, "%s logins cannot grant relay permits: a client that authenticates to send needs none (want %s)", svc, relayServiceNames)
		default:
			if j, dup := seen[svc]; dup {
				bad(key, "%s is already relay.services[%d]", svc, j)
			} else {
				seen[svc] = i
			}
		}
	}
	if len(r.NeverNetworks) > maxNeverNetworks {
		bad("relay.never_networks", "%d entries, more than %d", len(r.NeverNetworks), maxNeverNetworks)
	}
	_, errs := parseNetworks("relay.never_networks", r.NeverNetworks)
	for _, err := range errs {
		var ke *KeyError
		if errors.As(err, &ke) {
			bad(ke.Key, "%v", ke.Err)
		}
	}
	if r.IPv6Prefix < 56 || r.IPv6Prefix > 128 {
		bad("relay.ipv6_prefix", "%d is out of range (want 56 to 128: a shorter prefix lets one login open a whole site or provider)", r.IPv6Prefix)
	}
	if r.SharedLogins != 0 && (r.SharedLogins < 2 || r.SharedLogins > maxSharedLogins) {
		bad("relay.shared_logins", "%d is out of range (want 0 for off, or 2 to %d)", r.SharedLogins, maxSharedLogins)
	}
	switch {
	case r.SharedWindow < 0 || r.SharedWindow > maxSharedWindow:
		bad("relay.shared_window", "%v is out of range (want 0 to 720h)", r.SharedWindow)
	case r.SharedWindow == 0 && r.SharedLogins > 0:
		bad("relay.shared_window", "0, but shared_logins is set: it needs a window (e.g. 10m)")
	}
	if r.RefuseShared && r.SharedLogins == 0 {
		bad("relay.refuse_shared", "true, but shared_logins is 0 (off), so no address is ever shared")
	}
	if r.MaxPermits < 1 || r.MaxPermits > maxPermits {
		bad("relay.max_permits", "%d is out of range (want 1 to %d)", r.MaxPermits, maxPermits)
	}
	if r.Enabled && r.HookSocket != "" {
		if err := checkSocketPath(r.HookSocket); err != nil {
			bad("relay.hook_socket", "%v", err)
		}
	}
	if r.HookSocketGroup != "" && !validGroup(r.HookSocketGroup) {
		bad("relay.hook_socket_group", "%q is not a group name or number", r.HookSocketGroup)
	}
}

// RelayConfig returns the relay permit table's configuration. Its error
// names the first bad key; Validate reports them all.
func (r Relay) RelayConfig() (relay.Config, error) {
	c := relay.Config{
		TTL:          r.TTL,
		Services:     make([]rules.Service, 0, len(r.Services)),
		IPv6Prefix:   r.IPv6Prefix,
		SharedLogins: r.SharedLogins,
		SharedWindow: r.SharedWindow,
		RefuseShared: r.RefuseShared,
		MaxPermits:   r.MaxPermits,
	}
	for i, name := range r.Services {
		svc, err := rules.ParseService(name)
		if err != nil {
			return relay.Config{}, &KeyError{Key: "relay.services[" + strconv.Itoa(i) + "]", Err: err}
		}
		c.Services = append(c.Services, svc)
	}
	never, errs := parseNetworks("relay.never_networks", r.NeverNetworks)
	if len(errs) > 0 {
		return relay.Config{}, errs[0]
	}
	c.Never = never
	return c, nil
}

func (p *Postfix) validate(bad func(key, format string, args ...any)) {
	if p.Enabled {
		for _, l := range []struct{ key, v string }{
			{"postfix.listen", p.Listen}, {"postfix.relay_listen", p.RelayListen},
			{"postfix.socketmap_listen", p.SocketmapListen}, {"postfix.tcp_table_listen", p.TCPTableListen},
		} {
			if l.v == "" {
				continue
			}
			if err := checkHostPort(l.v); err != nil {
				bad(l.key, "%v", err)
			}
		}
		if p.Socket != "" {
			if err := checkSocketPath(p.Socket); err != nil {
				bad("postfix.socket", "%v", err)
			}
		}
		if p.Listen == "" && p.Socket == "" && p.RelayListen == "" && p.SocketmapListen == "" && p.TCPTableListen == "" {
			bad("postfix.listen", "empty, and so are socket, relay_listen, socketmap_listen and tcp_table_listen: set one, or enabled = false")
		}
	}
	if err := checkPolicyContext(p.RelayContext); err != nil {
		bad("postfix.relay_context", "%v", err)
	}
	switch p.TCPTableMap {
	case "relay", "block", "client":
	default:
		bad("postfix.tcp_table_map", "%q is not a map (want relay, block or client)", p.TCPTableMap)
	}
	if p.IdleTimeout < time.Second || p.IdleTimeout > maxIdleTimeout {
		bad("postfix.idle_timeout", "%v is out of range (want 1s to 24h)", p.IdleTimeout)
	}
	if p.MaxConnections < 1 || p.MaxConnections > maxPostfixConns {
		bad("postfix.max_connections", "%d is out of range (want 1 to %d)", p.MaxConnections, maxPostfixConns)
	}
	switch p.LimitAction {
	case "defer", "reject":
	default:
		bad("postfix.limit_action", "%q is not an action (want defer or reject)", p.LimitAction)
	}
}

// checkPolicyContext checks a policy_context value: Postfix sends it as
// one attribute line, and main.cf writes it inside { } with no quoting.
func checkPolicyContext(s string) error {
	if len(s) > maxPolicyContext {
		return fmt.Errorf("longer than %d bytes", maxPolicyContext)
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || c == '{' || c == '}' || c == ',' || c == '=' {
			return fmt.Errorf("%q: only printable ASCII without spaces, commas, braces or '=' (e.g. relaycheck)", s)
		}
	}
	return nil
}

func (p *Password) validate(bad func(key, format string, args ...any)) {
	if p.MinLength < 4 || p.MinLength > 256 {
		bad("password.min_length", "%d is outside 4 to 256", p.MinLength)
	}
	if p.MinClasses < 0 || p.MinClasses > 4 {
		bad("password.min_classes", "%d is outside 0 to 4", p.MinClasses)
	}
	if p.MinScore < 0 || p.MinScore > 4 {
		bad("password.min_score", "%d is outside 0 to 4", p.MinScore)
	}
	if p.BreachedFile != "" && !filepath.IsAbs(p.BreachedFile) {
		bad("password.breached_file", "%q is not an absolute path", p.BreachedFile)
	}
	if p.WeakDays < 1 || p.WeakDays > 3650 {
		bad("password.weak_days", "%d is outside 1 to 3650", p.WeakDays)
	}
	if p.CheckRate < 0 || p.CheckRate > 100000 {
		bad("password.check_rate", "%d is outside 0 to 100000", p.CheckRate)
	}
	if p.CheckListen != "" {
		if err := checkHostPort(p.CheckListen); err != nil {
			bad("password.check_listen", "%v", err)
		}
	}
	if p.RefuseWeakSubmission && !p.CheckAtLogin {
		bad("password.refuse_weak_submission", "needs check_at_login = true (only a login the nginx door checked can be flagged)")
	}
}

func (l *Limits) validate(bad func(key, format string, args ...any)) {
	checkLimit := func(key string, v int) {
		if v < 0 || v > maxSendLimit {
			bad(key, "%d is out of range (want 0 for no limit, up to %d)", v, maxSendLimit)
		}
	}
	checkLimit("limits.messages_per_hour", l.MessagesPerHour)
	checkLimit("limits.messages_per_day", l.MessagesPerDay)
	checkLimit("limits.recipients_per_hour", l.RecipientsPerHour)
	checkLimit("limits.recipients_per_day", l.RecipientsPerDay)
	if l.MaxAccounts < 1 || l.MaxAccounts > maxSendAccounts {
		bad("limits.max_accounts", "%d is out of range (want 1 to %d)", l.MaxAccounts, maxSendAccounts)
	}
	seen := map[string]int{}
	for i, a := range l.Accounts {
		key := "limits.account[" + strconv.Itoa(i) + "]"
		if acct, err := limitAccount(a.Account); err != nil {
			bad(key+".account", "%v", err)
		} else if j, dup := seen[acct]; dup {
			bad(key+".account", "%q is already limits.account[%d]", acct, j)
		} else {
			seen[acct] = i
		}
		checkLimit(key+".messages_per_hour", a.MessagesPerHour)
		checkLimit(key+".messages_per_day", a.MessagesPerDay)
		checkLimit(key+".recipients_per_hour", a.RecipientsPerHour)
		checkLimit(key+".recipients_per_day", a.RecipientsPerDay)
	}
}

// limitAccount normalizes a [[limits.account]] account: a login or
// @domain, as rules.NormalizeAccount takes them, but not "*" (that is
// what the defaults are for) and without any Unicode space.
func limitAccount(s string) (string, error) {
	a, err := rules.NormalizeAccount(s)
	if err != nil {
		return "", err
	}
	if a == "*" {
		return "", errors.New(`"*" is every account: set the limits of [limits] itself instead`)
	}
	if strings.IndexFunc(a, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", fmt.Errorf("%q has a space or control character", s)
	}
	return a, nil
}

// SendLimit returns the sending limiter's configuration. Call it on a
// validated config: an account Validate refuses is left out.
func (l Limits) SendLimit() sendlimit.Config {
	c := sendlimit.Config{
		Default: sendlimit.Limits{
			MessagesPerHour:   l.MessagesPerHour,
			MessagesPerDay:    l.MessagesPerDay,
			RecipientsPerHour: l.RecipientsPerHour,
			RecipientsPerDay:  l.RecipientsPerDay,
		},
		MaxAccounts: l.MaxAccounts,
	}
	for _, a := range l.Accounts {
		acct, err := limitAccount(a.Account)
		if err != nil {
			continue
		}
		if c.Accounts == nil {
			c.Accounts = make(map[string]sendlimit.Limits, len(l.Accounts))
		}
		c.Accounts[acct] = sendlimit.Limits{
			MessagesPerHour:   a.MessagesPerHour,
			MessagesPerDay:    a.MessagesPerDay,
			RecipientsPerHour: a.RecipientsPerHour,
			RecipientsPerDay:  a.RecipientsPerDay,
		}
	}
	return c
}

// checkSocketPath checks the path of a unix socket mailgate creates.
func checkSocketPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is not an absolute path", p)
	case len(p) > maxUnixPathLen:
		return fmt.Errorf("longer than %d bytes, the limit for a unix socket path", maxUnixPathLen)
	case strings.ContainsRune(p, 0):
		return errors.New("contains a NUL byte")
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("%q names a directory, not a socket", p)
	}
	return nil
}

// validGroup reports whether s can be a Unix group: a number, or a name
// of letters, digits, '_', '-' and '.', not starting with '-' (a trailing
// '$' as Samba machine accounts have).
func validGroup(s string) bool {
	if len(s) > maxGroupNameLen || s == "" || s[0] == '-' {
		return false
	}
	for i, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '$' && i == len(s)-1) {
			return false
		}
	}
	return true
}

// listener is a TCP address or unix socket mailgate listens on.
type listener struct{ key, addr string }

// checkListeners reports two listeners with the same address: the second
// would fail at start with "address already in use". A wildcard host
// ("", 0.0.0.0, ::) takes its port on every address. Host names are
// compared as written (no DNS). Port 0 picks a free port and never
// collides.
func (c *Config) checkListeners(bad func(key, format string, args ...any)) {
	var tcp []listener
	add := func(key, addr string, on bool) {
		if on && addr != "" {
			tcp = append(tcp, listener{key, addr})
		}
	}
	add("admin.listen", c.Admin.Listen, true)
	add("metrics.listen", c.Metrics.Listen, true)
	add("console.listen", c.Console.Listen, true)
	add("dnsbl_server.listen", c.DNSBLServer.Listen, true) // its TCP side
	add("dovecot.listen", c.Dovecot.Listen, c.Dovecot.Enabled)
	add("nginx.listen", c.Nginx.Listen, c.Nginx.Enabled && !c.Nginx.Unix())
	add("postfix.listen", c.Postfix.Listen, c.Postfix.Enabled)
	add("postfix.relay_listen", c.Postfix.RelayListen, c.Postfix.Enabled)
	add("postfix.socketmap_listen", c.Postfix.SocketmapListen, c.Postfix.Enabled)
	add("postfix.tcp_table_listen", c.Postfix.TCPTableListen, c.Postfix.Enabled)
	for i, a := range tcp {
		for _, b := range tcp[:i] {
			if sameListenAddr(a.addr, b.addr) {
				bad(a.key, "%q is also %s (%q); each listener needs its own address", a.addr, b.key, b.addr)
				break
			}
		}
	}

	var unix []listener
	addUnix := func(key, path string, on bool) {
		if on && path != "" {
			unix = append(unix, listener{key, filepath.Clean(path)})
		}
	}
	addUnix("admin.socket", c.Admin.Socket, true)
	addUnix("relay.hook_socket", c.Relay.HookSocket, c.Relay.Enabled)
	addUnix("postfix.socket", c.Postfix.Socket, c.Postfix.Enabled)
	addUnix("nginx.listen", c.Nginx.Listen, c.Nginx.Enabled && c.Nginx.Unix())
	for i, a := range unix {
		for _, b := range unix[:i] {
			if a.addr == b.addr {
				bad(a.key, "%q is also %s; each socket needs its own path", a.addr, b.key)
				break
			}
		}
	}
}

// sameListenAddr reports whether two host:port listen addresses collide.
// Addresses that do not parse never do (Validate reports them already).
func sameListenAddr(a, b string) bool {
	ha, pa, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(b)
	if err != nil {
		return false
	}
	na, err := strconv.ParseUint(pa, 10, 16)
	if err != nil {
		return false
	}
	nb, err := strconv.ParseUint(pb, 10, 16)
	if err != nil || na != nb || na == 0 {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	if wild(ha) || wild(hb) {
		return true
	}
	if ia, err := netip.ParseAddr(ha); err == nil {
		ib, err := netip.ParseAddr(hb)
		return err == nil && ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(ha, "."), strings.TrimSuffix(hb, "."))
}

func (f *Firewall) validate(bad func(key, format string, args ...any)) {
	firewallModes := []string{"public", "autoban", "protected", "private"}
	if !slices.Contains(firewallModes, f.Mode) {
		bad("firewall.mode", "%q is not a mode (want %s)", f.Mode, strings.Join(firewallModes, ", "))
	}
	seen := map[int]string{}
	ports := func(key string, ps []int) {
		for i, p := range ps {
			k := key + "[" + strconv.Itoa(i) + "]"
			switch {
			case p < 1 || p > 65535:
				bad(k, "%d is not a port (want 1 to 65535)", p)
			case seen[p] != "":
				bad(k, "%d is already %s", p, seen[p])
			default:
				seen[p] = k
			}
		}
	}
	ports("firewall.retrieval_ports", f.RetrievalPorts)
	ports("firewall.submission_ports", f.SubmissionPorts)
	ports("firewall.smtp_ports", f.SMTPPorts)
	if len(f.RetrievalPorts)+len(f.SubmissionPorts)+len(f.SMTPPorts) == 0 {
		bad("firewall.retrieval_ports", "no mail port at all (retrieval_ports, submission_ports and smtp_ports are empty)")
	}
	if f.Rate < 1 || f.Rate > 100000 {
		bad("firewall.rate", "%d is out of range (want 1 to 100000)", f.Rate)
	}
	switch f.RatePer {
	case time.Second, time.Minute, time.Hour:
	default:
		bad("firewall.rate_per", "%v is not a unit nftables knows (want 1s, 1m or 1h)", f.RatePer)
	}
	if f.AutobanFor < time.Second || f.AutobanFor > 720*time.Hour {
		bad("firewall.autoban_for", "%v is out of range (want 1s to 720h)", f.AutobanFor)
	}
	if f.TrustedFor < time.Second || f.TrustedFor > 720*time.Hour {
		bad("firewall.trusted_for", "%v is out of range (want 1s to 720h)", f.TrustedFor)
	}
	if f.ReconcileEvery < time.Second || f.ReconcileEvery > 24*time.Hour {
		bad("firewall.reconcile_every", "%v is out of range (want 1s to 24h)", f.ReconcileEvery)
	}
	// Below -199 the chain would run before conntrack, and "ct state
	// new" would never match.
	if f.Priority < -199 || f.Priority > 300 {
		bad("firewall.priority", "%d is out of range (want -199 to 300: below -199 the chain runs before connection tracking)", f.Priority)
	}
}

func (d *DNSBLServer) validate(bad func(key, format string, args ...any), e *Error) {
	if d.Listen != "" {
		if err := checkHostPort(d.Listen); err != nil {
			bad("dnsbl_server.listen", "%v", err)
		}
	}
	allow, errs := parseNetworks("dnsbl_server.allow_networks", d.AllowNetworks)
	for _, err := range errs {
		e.add(err)
	}
	c := dnsbld.Config{Zone: d.Zone, TTL: d.TTL, Allow: allow, Rate: d.Rate}
	if err := c.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			key, _, _ := strings.Cut(line, " ")
			bad("dnsbl_server."+key, "%s", line)
		}
	}
}

// Server is the DNSBL handler's part of the section. Call it on a valid
// config.
func (d *DNSBLServer) Server() (dnsbld.Config, error) {
	allow, errs := parseNetworks("dnsbl_server.allow_networks", d.AllowNetworks)
	if len(errs) > 0 {
		return dnsbld.Config{}, errors.Join(errs...)
	}
	c := dnsbld.Config{Zone: d.Zone, TTL: d.TTL, Allow: allow, Rate: d.Rate}
	return c, c.Validate()
}
