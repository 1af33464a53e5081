// Package config is mailgate's configuration: one strict TOML file whose
// defaults live in code. Unknown keys are errors, and every error names its
// key path. The commented example etc/mailgate.toml is generated from the
// struct below (the `doc` tags), so it cannot drift from the code.
//
// Only cmd/mailgate imports this package; it hands plain values to the
// packages it wires.
package config

import (
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
)

// DefaultPath is where mailgate looks for its config when --config is not
// given. When that file does not exist, mailgate runs on Default().
const DefaultPath = "/etc/mailgate/mailgate.toml"

// Config is the whole configuration file.
type Config struct {
	Log     Log     `toml:"log" doc:"Logging. Diagnostics go to stderr; decision lines (one per verdict) go where 'decisions' says."`
	Store   Store   `toml:"store" doc:"Where rules and their audit trail are kept."`
	Cluster Cluster `toml:"cluster" doc:"Several mailgate nodes sharing live state through Redis or Valkey (docs/multi-server.md): login results, bans, ban removals, relay permits and firewall trust made on one node reach every other within a second. Decisions never wait for Redis: when it is down, each node decides on its own state and merges back when it returns. Whoever can write to this Redis can ban anyone: give it a password and keep it on a private network. Off by default."`
	Admin   Admin   `toml:"admin" doc:"The admin API used by the mailgate CLI (and later the web UI)."`
	Dovecot Dovecot `toml:"dovecot" doc:"The Dovecot auth policy door (auth_policy_server_url). See docs/dovecot.md."`
	Policy  Policy  `toml:"policy" doc:"What the decision engine checks before any account rule."`
	GeoIP   GeoIP   `toml:"geoip" doc:"Country rules (docs/countries.md): the country of each client address, from a MaxMind-format (.mmdb: GeoLite2/GeoIP2 Country, DB-IP, ip-location-db) or IP2Location BIN file, and a global list of allowed or denied countries for logins. Per-account exceptions: mailgate rule add --account A --extra --country FR (or --ip). Per-account 'only these countries': --allow --country DE,AT."`
	Nginx   Nginx   `toml:"nginx" doc:"The nginx mail proxy door (auth_http). See docs/nginx.md. mailgate checks the password itself (nginx never re-checks SMTP passwords) and names the backend."`
	Postfix Postfix `toml:"postfix" doc:"The Postfix doors (docs/postfix.md): the policy delegation server (check_policy_service), which answers relay checks from relay permits and applies account rules, country rules and sending limits to SASL-authenticated senders; and socketmap and tcp_table servers for check_client_access. Where check_policy_service goes in main.cf decides whether you run an open relay: copy it from docs/postfix.md."`
	// BruteForce is the brute-force protection of docs/bruteforce.md.
	BruteForce  BruteForce  `toml:"bruteforce" doc:"Brute-force protection (docs/bruteforce.md). Login results reported by the doors are counted in sliding windows; thresholds turn into bans. Trusted networks and addresses an account's own allow rule names are never counted or banned."`
	Relay       Relay       `toml:"relay" doc:"Relay permits, POP/IMAP-before-SMTP (docs/relay.md): after a successful IMAP or POP3 login, the client's address may send mail through Postfix without SMTP AUTH for a while, for old clients that cannot authenticate when sending. Postfix asks through the [postfix] door; nothing is permitted until main.cf calls it there. Permits survive restarts and expire by themselves (no cron job). 'mailgate permit list' shows them, with the account that earned each."`
	Limits      Limits      `toml:"limits" doc:"Sending limits per authenticated sender (Postfix sasl_username), to contain an account whose password was stolen: messages and recipients per hour and per day, in sliding windows (the hour moves in one-minute steps, the day in one-hour steps). The Postfix policy server counts and checks them at RCPT, so check_policy_service must be in smtpd_recipient_restrictions (docs/postfix.md); postfix.limit_action says what an over-limit sender gets, and the decision log shows it (reason=send_limit). Counts are kept in memory and start from zero when mailgate restarts. 0 = no limit; all limits are 0 by default."`
	Firewall    Firewall    `toml:"firewall" doc:"Firewall modes on nftables (docs/firewall.md). mailgate owns one table, 'table inet mailgate', and touches nothing else; its sets are a cache of mailgate's bans and trusted addresses, written in batches off the request path and re-asserted every reconcile_every. Needs CAP_NET_ADMIN (root). 'mailgate firewall show' prints the ruleset mailgate wants and how the kernel's differs."`
	DNSBLServer DNSBLServer `toml:"dnsbl_server" doc:"mailgate as a DNSBL server (docs/dnsbl-server.md): its current address bans (automatic and by hand, and the kernel's autobans when the firewall runs) served as a DNS zone, so that Postfix postscreen, rspamd or another mailgate can ask it: 4.3.2.1.bans.mailgate.local answers A 127.0.0.2 (a mailgate ban) or 127.0.0.3 (a firewall autoban) and a TXT with the ban's reason and end; IPv6 addresses by their 32 nibbles. Login bans are never listed. Off by default."`
	DNSBL       DNSBL       `toml:"dnsbl" doc:"DNS blocklists for logins (docs/dnsbl.md): before an IMAP or POP3 login is decided, the client's address is looked up in these zones, in parallel, through the resolver; a score (the sum of the weights of the zones that list it) at or above threshold refuses the login (reason dnsbl, text messages.dnsbl), a lower one is only written on the decision line. Trusted networks, addresses an account's own allow rule names and addresses an account logged in from before (known good) are never looked up. Answers are cached. Off while zones is empty."`
	// Messages maps a reason code to the text the mail user sees when
	// refused for that reason.
	Logs          Logs              `toml:"logs" doc:"The log door (docs/logs.md): mail logs read for login outcomes, for servers that cannot ask mailgate (Postfix with Cyrus SASL, a Dovecot without the policy API)."`
	Password      Password          `toml:"password" doc:"Password policy (docs/passwords.md): 'mailgate password check' and 'generate', the admin API's POST /v1/password/check for control panels and webmail, and, where mailgate sees the cleartext password (the nginx door), a weak-password flag on successful logins. Only a flag and the login are ever kept, never the password."`
	Console       Console           `toml:"console" doc:"The admin console in the browser (docs/console.md): overview, bans, rules and explain, accounts, permits, the decision log. Its own HTTP listener, off by default; sign in with a console user ('mailgate console-user add NAME') or, if token_sign_in, with admin.token. Every change goes to the audit trail under the signed-in name."`
	Metrics       Metrics           `toml:"metrics" doc:"Prometheus metrics (docs/metrics.md): decisions by door, service, action and reason, latency per door, bans, permits, errors, and the process's own. Off by default."`
	Notifications Notifications     `toml:"notifications" doc:"Notifications (docs/notifications.md): which events are sent to the [[notify]] targets, how often per subject, and mails to the account's owner. Nothing is sent while no [[notify]] target is configured (and owner mails are off)."`
	Notify        []NotifyTarget    `toml:"notify" doc:"A notification target: a webhook, Alertmanager or mail through the local sendmail (docs/notifications.md). Events are queued per target and delivered off the request path, with retries; a decision never waits for one. Repeat the table for more targets."`
	Messages      map[string]string `toml:"messages" doc:"Texts a refused mail user sees, by reason code (the reason= of the decision line). Placeholders: {service} (e.g. POP3), {ip}, {login}, {country}, {zones} (the blocklists listing the address, for dnsbl). One line, at most 512 bytes. Dovecot shows them as '[ALERT] text' (IMAP), '-ERR [AUTH] text' (POP3), '535 5.7.8 text' (SMTP). A reason left out keeps the text shown here."`
}

// DNSBL configures the DNS blocklist lookups of logins.
type DNSBL struct {
	Zones     []string      `toml:"zones" doc:"Zones in Postfix postscreen's syntax (postscreen_dnsbl_sites): name=filter*weight, e.g. [\"zen.spamhaus.org=127.0.0.[4..7]*3\", \"list.example*1\"]. Without =filter any answer in 127.0.0.0/8 counts; without *weight the weight is 1. Never count policy lists of dynamic ranges (Spamhaus PBL, 127.0.0.10 and 127.0.0.11 in zen): they are for mail sent without a login and would refuse customers at home. Empty = off. At most 32."`
	Threshold int           `toml:"threshold" doc:"The score at or above which a login is refused, 1 to 10000."`
	Services  []string      `toml:"services" doc:"The services whose logins are looked up: imap, pop3, and by choice submission and smtp (SMTP AUTH through nginx)."`
	Resolver  string        `toml:"resolver" doc:"The DNS resolver asked: an IP address with an optional port (127.0.0.1, 127.0.0.1:5353, [::1]:53). Empty = the first nameserver of /etc/resolv.conf. Use a local caching resolver (unbound): public resolvers are refused by most lists (127.255.255.x answers)."`
	Timeout   time.Duration `toml:"timeout" doc:"How long one zone may take to answer, 10ms to 10s; a zone that takes longer, answers SERVFAIL or refuses counts as not listing the address (fail open)."`
	Budget    time.Duration `toml:"budget" doc:"How long a login waits for all zones together, 10ms to 1.9s: Dovecot gives its policy server 2 s. Zones still asked when it runs out count as not listing."`
	MissTTL   time.Duration `toml:"miss_ttl" doc:"How long an address no zone lists is remembered, 1s to 24h. A listing is remembered for its DNS TTL, at least 1 minute and at most 1 hour; a zone that failed is asked again after 1 minute."`
	CacheSize int           `toml:"cache_size" doc:"Memory bound: the most addresses remembered, 1 to 10000000; the least recently used is forgotten first."`
}

// Password configures the password policy.
type Password struct {
	MinLength            int    `toml:"min_length" doc:"Fewest characters, 4 to 256."`
	MinClasses           int    `toml:"min_classes" doc:"How many of the four character classes (lower case, upper case, digits, symbols) a password needs, 0 to 4. 0 is NIST SP 800-63B's length-only rule: then raise min_length to 15."`
	MinScore             int    `toml:"min_score" doc:"Lowest zxcvbn score accepted, 0 to 4 (0 = no dictionary and pattern check). 3 means at least 10^8 guesses: it refuses a dictionary word with a year and a symbol that the class rule lets through."`
	BreachedFile         string `toml:"breached_file" doc:"Optional Pwned Passwords SHA-1 file, ordered by hash (lines HEX40:COUNT), searched in place (memory-mapped, never loaded): a password in it fails. Download it with haveibeenpwned-downloader, and replace it by rename, never in place. Empty = no breached list."`
	CheckAtLogin         bool   `toml:"check_at_login" doc:"The nginx door checks the policy after every successful password check (nginx.verify must include the protocol): a weak password adds weak_password=1 to the login's log line and keeps the login and the time in the store ('mailgate password weak'). A wrong password is never checked."`
	RefuseWeakSubmission bool   `toml:"refuse_weak_submission" doc:"Refuse SMTP submission (reason weak_password, text messages.weak_password) to logins whose password fails the policy: at the nginx door after the correct password, and at the Postfix policy door for sasl_username seen with a weak password within weak_days. IMAP and POP3 keep working, so the user can read the message and change the password. Needs check_at_login."`
	WeakDays             int    `toml:"weak_days" doc:"How long a login stays flagged after its last login with a weak password, 1 to 3650 days; a login with a good password clears it at once."`
	CheckListen          string `toml:"check_listen" doc:"Optional host:port of a listener that serves POST /v1/password/check and nothing else, without a token, for a webmail or control panel (contrib/roundcube), e.g. 127.0.0.1:4081. It tells a caller nothing secret (see check_rate), so it needs no token: giving a webmail the admin token would hand every PHP script that can read its config the whole admin API. \"\" = off."`
	CheckRate            int    `toml:"check_rate" doc:"POST /v1/password/check answers at most this many checks per second (HTTP 429 beyond), 0 to 100000; 0 = no limit. The check tells nothing secret (the policy and the breached list are public); the limit bounds the CPU a caller can use."`
}

// DNSBLServer configures the DNSBL listener.
type DNSBLServer struct {
	Listen        string        `toml:"listen" doc:"host:port answering DNS queries over UDP and TCP, e.g. 127.0.0.1:5353 (or 127.0.0.53:53 for a resolver that only asks port 53); empty = off. A DNS listener takes no key: allow_networks is its only authentication."`
	Zone          string        `toml:"zone" doc:"The zone served; names outside it are REFUSED. Use a name you own or one under .local; at least two labels."`
	TTL           time.Duration `toml:"ttl" doc:"TTL of every answer, and how long resolvers cache 'not listed' (the SOA's minimum), 1s to 1h. A listing's TTL never reaches past its ban's end, so a lifted ban is forgotten within ttl."`
	AllowNetworks []string      `toml:"allow_networks" doc:"Client networks (CIDR or address) that get answers; everyone else gets REFUSED. Loopback by default: every local user, a customer's script on a shared host too, can then ask whether an address is banned, why and until when (never which login). Add only the networks of your own mail servers and their resolvers."`
	Rate          int           `toml:"rate" doc:"UDP queries per second one client (an IPv6 client: its /64) may ask, with a burst of as many; queries over it are dropped, not answered, so that a forged source never gets a flood of answers. TCP is not limited. 0 = no limit, up to 1000000. A local resolver forwarding for many servers is one client: size it for that."`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `toml:"listen" doc:"host:port serving GET /metrics (and GET /healthz) in the Prometheus text format, e.g. 127.0.0.1:9477; empty = off. No authentication: keep it on loopback (mailgate warns at start when it is not) and let Prometheus scrape through the host's own agent or an SSH/TLS tunnel."`
}

// Console configures the admin console in the browser.
type Console struct {
	Listen         string        `toml:"listen" doc:"host:port of the console, e.g. 127.0.0.1:4090; empty = off. Plain HTTP: keep it on loopback and put nginx with TLS in front of it (docs/console.md); mailgate warns at start when it is not loopback."`
	UsersFile      string        `toml:"users_file" doc:"The console users and their Argon2id password hashes, one 'name:hash' line each, written by 'mailgate console-user add NAME' (mode 0600). Read again when it changes: a user added or removed counts at the next sign-in. Empty = console-users in the directory of store.path."`
	TokenSignIn    bool          `toml:"token_sign_in" doc:"Also accept admin.token as the password of the user 'admin-token' (the audit trail names changes 'console:admin-token'). Off: only console users sign in."`
	SessionTTL     time.Duration `toml:"session_ttl" doc:"How long a sign-in lasts, 5m to 7d (sessions are kept in memory: a restart signs everyone out)."`
	SecureCookie   bool          `toml:"secure_cookie" doc:"Always mark the session cookie Secure. Off: it is Secure when the browser's request came over HTTPS (the proxy sends X-Forwarded-Proto: https); a Secure cookie is never sent over plain HTTP."`
	SignInFailures int           `toml:"signin_failures" doc:"Failed sign-ins allowed per client address, and per user name, within signin_window, 1 to 1000; beyond, sign-in answers 429 until the window passes."`
	SignInWindow   time.Duration `toml:"signin_window" doc:"The window of signin_failures, 1m to 24h."`
	JournalUnit    string        `toml:"journal_unit" doc:"When log.decisions is stdout or stderr (the journal, under systemd), the console reads the decision lines with 'journalctl --unit=' this unit. Empty = do not read the journal (the console's charts and searches then say so). With log.decisions a file, the file is read."`
}

// Log configures logging.
type Log struct {
	Level     string `toml:"level" doc:"Diagnostic log level: debug, info, warn or error."`
	Decisions string `toml:"decisions" doc:"Where decision lines go: stdout, stderr, off, or a file path (appended to; reopened on SIGHUP)."`
}

// Cluster configures the shared live state on Redis (internal/cluster).
type Cluster struct {
	Enabled       bool          `toml:"enabled" doc:"Join the cluster: publish this node's login results and bans to Redis and apply the other nodes'."`
	Redis         string        `toml:"redis" doc:"The Redis or Valkey server: host:port, redis://[user@]host:port[/db], or rediss://... for TLS. Put no password here; use password_file."`
	Username      string        `toml:"username" doc:"The Redis ACL user (Redis 6 or later); empty = the default user."`
	PasswordFile  string        `toml:"password_file" doc:"A file holding the Redis password (requirepass or the ACL user's), one line, not readable by others (chmod 600). mailgate never logs it. Without one, config check warns: whoever reaches an open Redis can ban anyone."`
	TLS           bool          `toml:"tls" doc:"Speak TLS to Redis (also on with a rediss:// address). The server's certificate is checked against tls_ca_file, or the system's CAs."`
	TLSServerName string        `toml:"tls_server_name" doc:"The name in the Redis server's certificate; empty = the host of redis."`
	TLSCAFile     string        `toml:"tls_ca_file" doc:"PEM file of the CA that signed the Redis server's certificate; empty = the system's CAs."`
	DialTimeout   time.Duration `toml:"dial_timeout" doc:"How long a connection to Redis may take, 100ms to 30s."`
	Timeout       time.Duration `toml:"timeout" doc:"How long a write to Redis or a missing answer may take before the connection counts as lost, 100ms to 60s. Decisions never wait for it."`
	Node          string        `toml:"node" doc:"This node's name in 'mailgate status' and in what it publishes: letters, digits, '.', '-', '_', at most 64. Empty = the host name. Must differ between nodes."`
	KeyPrefix     string        `toml:"key_prefix" doc:"Prefix of every Redis key and channel mailgate uses, so that several clusters can share one Redis: letters, digits, ':', '-', '_', at most 64."`
}

// Store configures persistence.
type Store struct {
	Driver       string `toml:"driver" doc:"sqlite (an embedded file, the default) or postgres (a PostgreSQL server several mailgate nodes share; docs/store-postgres.md)."`
	Path         string `toml:"path" doc:"The SQLite database file. On a server use /var/lib/mailgate/mailgate.db. With driver = postgres no database is kept here, but its directory is still where the default dovecot-api-key file and the log door's state go."`
	DSN          string `toml:"dsn" doc:"driver = postgres: the libpq connection string, as a URL (postgres://mailgate@db1.example.net/mailgate?sslmode=verify-full) or key=value pairs (host=db1.example.net dbname=mailgate sslmode=verify-full). TLS is set here (sslmode, sslrootcert, sslcert, sslkey). Put the password in password_file rather than here; mailgate never logs the DSN, only user@host:port/database."`
	PasswordFile string `toml:"password_file" doc:"driver = postgres: a file holding the database password (one line, mode 0600 or 0640, not readable by others); it replaces any password in dsn. Empty = the password in dsn, or none (peer, cert or .pgpass authentication)."`
	MaxConns     int    `toml:"max_conns" doc:"driver = postgres: the most connections this node opens to the server, 1 to 100; 0 = max(4, CPUs). The store is off the decision path, so a few suffice."`
}

// Admin configures the admin API.
type Admin struct {
	Socket string `toml:"socket" doc:"Unix socket of the admin API; the CLI connects here. Only root and the socket's group may use it."`
	Listen string `toml:"listen" doc:"Optional TCP host:port for the admin API (e.g. 127.0.0.1:4080). Needs token. HTTP without TLS: keep it on loopback, or behind a TLS-terminating proxy (mailgate warns at start when it is not loopback)."`
	Token  string `toml:"token" doc:"Bearer token required on the TCP listener (not on the unix socket); at least 16 characters, e.g. from 'openssl rand -hex 24'."`
}

// Dovecot configures the Dovecot auth policy door.
type Dovecot struct {
	Enabled      bool   `toml:"enabled" doc:"Serve the Dovecot auth policy API."`
	Listen       string `toml:"listen" doc:"host:port that Dovecot's auth_policy_server_url points at."`
	APIKey       string `toml:"api_key" doc:"The key Dovecot must send with every request (auth_policy_server_api_header = X-API-Key: <key>), at least 16 characters, e.g. from 'openssl rand -hex 32'. Empty = the key in api_key_file. A request without the right key gets HTTP 401 and changes nothing."`
	APIKeyFile   string `toml:"api_key_file" doc:"Used when api_key is empty: the file holding the key, created with a random key (mode 0600) on the first start and read on every later one; Dovecot reads it too with auth_policy_server_api_header = </path/of/the/file (docs/dovecot.md). Empty = dovecot-api-key in the directory of store.path (/var/lib/mailgate/dovecot-api-key on a server). A file that is not a key, or that other users may read, stops the start with an error."`
	MaxBodyBytes int64  `toml:"max_body_bytes" doc:"Largest request body accepted, 1024 to 1048576 bytes; larger requests get HTTP 413."`
}

// Policy configures the global checks.
type Policy struct {
	TrustedNetworks []string `toml:"trusted_networks" doc:"Addresses and CIDR networks (IPv4 or IPv6) always allowed, before any other check (webmail host, office), e.g. [\"192.0.2.10\", \"2001:db8:1::/48\"]. Rules added with 'mailgate rule add --global --allow' join these."`
	DenyNetworks    []string `toml:"deny_networks" doc:"Addresses and CIDR networks always refused, unless trusted. Rules added with 'mailgate rule add --global --deny' join these."`
}

// GeoIP configures country lookups and the global country list.
type GeoIP struct {
	Database       string   `toml:"database" doc:"The country database file; empty = no country lookups. It is memory-mapped and reloaded when the file changes (geoipupdate replaces it by rename) and on SIGHUP; a broken new file keeps the old one."`
	Format         string   `toml:"format" doc:"auto (detected from the file), mmdb or ip2location."`
	CountryField   string   `toml:"country_field" doc:"mmdb only: the dotted path of the country code in a record, e.g. country.iso_code (MaxMind, DB-IP) or country_code (ip-location-db). Empty = detected."`
	AllowCountries []string `toml:"allow_countries" doc:"Logins only from these countries (ISO 3166-1 alpha-2 codes, e.g. [\"DE\", \"AT\"]), plus each account's extra countries and addresses. Empty = no allow list. Mail delivery (no login) is never checked by country."`
	DenyCountries  []string `toml:"deny_countries" doc:"No logins from these countries, except an account's extra countries and addresses. Use either allow_countries or deny_countries."`
	Private        string   `toml:"private" doc:"Private, loopback and link-local addresses the database does not list: allow (pass the country check), deny (fail it) or list (treated as a country on no list)."`
	Unknown        string   `toml:"unknown" doc:"Addresses the database has no country for: allow, deny or list (blocked when allow_countries is set, passing with deny_countries)."`
}

// Nginx configures the nginx auth_http door.
type Nginx struct {
	Enabled         bool          `toml:"enabled" doc:"Serve nginx's mail auth_http protocol."`
	Listen          string        `toml:"listen" doc:"host:port that nginx's auth_http points at (auth_http 127.0.0.1:4002/auth;), or the absolute path of a unix socket (auth_http unix:/run/mailgate/nginx.sock:/auth;), mode 0660 with group socket_group. On TCP, secret is required: any local process could otherwise have passwords checked from a made-up client address and get any address banned."`
	SocketGroup     string        `toml:"socket_group" doc:"With listen a unix socket: the group given the socket, so that nginx's worker processes (user www-data on Debian) can connect. A group name or number; \"\" = the daemon's own group."`
	SecretHeader    string        `toml:"secret_header" doc:"The header nginx adds with auth_http_header, carrying secret."`
	Secret          string        `toml:"secret" doc:"The secret nginx must send: auth_http_header X-Auth-Key \"<secret>\";, at least 16 characters (openssl rand -hex 24). Required when listen is TCP; optional on a unix socket, whose file mode keeps others out. Compared in constant time."`
	VerifyWith      string        `toml:"verify_with" doc:"How passwords are checked: dovecot (Dovecot's auth service, service auth { inet_listener }, with the real client address) or imap (a LOGIN against imap_verify, as PHP auth_http scripts often do)."`
	DovecotAuth     string        `toml:"dovecot_auth" doc:"Dovecot's auth service: the path of a unix_listener only mailgate's user may use (etc/dovecot/96-mailgate-auth.conf: /run/dovecot/auth-mailgate), or host:port of an inet_listener. Whoever can connect to it can check passwords and claim any client address (rip=): prefer the unix socket."`
	IMAPVerify      string        `toml:"imap_verify" doc:"host:port of the IMAP server for verify_with = imap. Put mailgate's address in Dovecot's login_trusted_networks so it sees the real client address (sent with the IMAP ID command)."`
	Verify          []string      `toml:"verify" doc:"Protocols whose passwords mailgate checks before answering OK: imap, pop3, smtp. smtp is always checked (nginx hands SMTP sessions to the backend with XCLIENT and no password). Leaving imap/pop3 out saves one check per login (the backend checks again), but then their failures are not counted toward bans."`
	IMAPBackend     string        `toml:"imap_backend" doc:"ip:port nginx proxies IMAP logins to (an IP address: nginx does no DNS here). Empty = IMAP logins are refused."`
	POP3Backend     string        `toml:"pop3_backend" doc:"ip:port for POP3 logins. Empty = POP3 logins are refused."`
	SMTPBackend     string        `toml:"smtp_backend" doc:"ip:port for SMTP (submission) sessions; the backend must accept XCLIENT from nginx (Postfix: smtpd_authorized_xclient_hosts). Empty = SMTP is refused."`
	FailWait        time.Duration `toml:"fail_wait" doc:"After a wrong password nginx waits this long before telling the client, and keeps the connection for another try (Auth-Wait). 0 = tell at once and close."`
	MaxWaitAttempts int           `toml:"max_wait_attempts" doc:"From this attempt on one connection, failures close the connection instead of waiting (nginx keeps state per attempt; its docs advise 10 to 20)."`
	SMTPErrorCode   string        `toml:"smtp_error_code" doc:"SMTP reply code nginx gives for a refused or failed SMTP login."`
	FailMessage     string        `toml:"fail_message" doc:"The text a client gets for a wrong password."`
	VerifyTimeout   time.Duration `toml:"verify_timeout" doc:"How long a password check may take before the client gets a temporary failure. Keep it below nginx's auth_http_timeout (default 60s)."`
}

// Postfix configures the Postfix doors.
type Postfix struct {
	Enabled         bool          `toml:"enabled" doc:"Serve the Postfix doors."`
	Listen          string        `toml:"listen" doc:"host:port of the policy server, for check_policy_service inet:127.0.0.1:10040. \"\" = no TCP listener."`
	Socket          string        `toml:"socket" doc:"Unix socket of the policy server, an absolute path, e.g. /var/spool/postfix/private/mailgate for check_policy_service unix:private/mailgate (inside Postfix's queue directory, where a chrooted smtpd finds it). \"\" = none."`
	RelayContext    string        `toml:"relay_context" doc:"The policy_context value that marks a relay check: check_policy_service { inet:127.0.0.1:10040, policy_context=relaycheck } in smtpd_relay_restrictions, before reject_unauth_destination. A relay check is answered OK for an address with a relay permit and DUNNO otherwise. \"\" = only relay_listen takes relay checks."`
	RelayListen     string        `toml:"relay_listen" doc:"Optional host:port of a second policy listener where every request is a relay check, for a Postfix where policy_context cannot be set. \"\" = none."`
	SocketmapListen string        `toml:"socketmap_listen" doc:"Optional host:port of the socketmap server, e.g. 127.0.0.1:10041 for check_client_access socketmap:inet:127.0.0.1:10041:relay. The map name says what is answered: relay (OK for an address with a relay permit), block (REJECT with mailgate's text for a banned or denied address) or client (block, then relay). \"\" = off."`
	TCPTableListen  string        `toml:"tcp_table_listen" doc:"Optional host:port of the tcp_table server, e.g. 127.0.0.1:10042 for check_client_access tcp:127.0.0.1:10042. \"\" = off."`
	TCPTableMap     string        `toml:"tcp_table_map" doc:"What the tcp_table server answers (its requests name no map): relay, block or client, as for socketmap."`
	IdleTimeout     time.Duration `toml:"idle_timeout" doc:"Close a connection that stayed idle this long, 1s to 24h. Postfix keeps one connection per smtpd process, closes it itself after smtpd_policy_service_max_idle (300s), and reconnects when mailgate closed it: a short timeout costs a reconnect, a long one lets idle connections fill max_connections (the longest idle is then closed to make room)."`
	MaxConnections  int           `toml:"max_connections" doc:"The most connections open at once over all Postfix listeners, 1 to 100000. Each smtpd process holds one; set it above Postfix's default_process_limit (100) times the number of smtpd services."`
	LimitAction     string        `toml:"limit_action" doc:"What a sender over a sending limit gets: defer (DEFER_IF_PERMIT, the client sees 450 4.7.1 and retries later) or reject (REJECT, 554 5.7.1). The text is messages.send_limit."`
}

// Relay configures relay permits (POP/IMAP-before-SMTP).
type Relay struct {
	Enabled         bool          `toml:"enabled" doc:"Grant relay permits on logins and answer Postfix's relay checks with them. Off (the default): no login grants a permit and no permit lets anyone relay. On, a login reported to the Dovecot door (which takes reports only with its key, dovecot.api_key or api_key_file) opens relaying for its address."`
	TTL             time.Duration `toml:"ttl" doc:"How long a permit lasts after the login that granted it; every new login from the address starts it again. 1s to 720h (30 days)."`
	Services        []string      `toml:"services" doc:"Services whose successful logins grant a permit: imap, pop3, sieve. smtp and submission cannot: a client that authenticates to send needs no permit."`
	NeverNetworks   []string      `toml:"never_networks" doc:"Addresses and CIDR networks that never get a permit, whoever logs in from them (at most 256). The list replaces the default: keep loopback in it (mailgate warns at start when it is missing): behind nginx or a webmail every login comes from 127.0.0.1, and a permit there would let everyone relay. Add NAT gateways and other addresses many people share."`
	IPv6Prefix      int           `toml:"ipv6_prefix" doc:"An IPv6 permit covers the client's network of this size, 56 to 128: 64 covers one customer's /64 (whose privacy addresses change), 128 only the exact address that logged in. An IPv4 permit always covers one address."`
	SharedLogins    int           `toml:"shared_logins" doc:"An address (or IPv6 network) that this many distinct accounts logged in from within shared_window is marked shared in 'mailgate permit list': probably a NAT pool, a hotspot or an office, where one permit lets everyone behind it relay. 0 = off, otherwise 2 to 1000."`
	SharedWindow    time.Duration `toml:"shared_window" doc:"The window of shared_logins, 0 to 720h; the accounts seen within it are listed with each permit. Must be set when shared_logins is."`
	RefuseShared    bool          `toml:"refuse_shared" doc:"Refuse permits to shared addresses, and withdraw the one they have, until shared_window passes without shared_logins accounts. Needs shared_logins."`
	MaxPermits      int           `toml:"max_permits" doc:"Memory bound: the most permits kept, 1 to 10000000; when full, the permit closest to expiry makes room."`
	HookSocket      string        `toml:"hook_socket" doc:"Unix socket, an absolute path, where 'mailgate hook postlogin' (run from Dovecot's post-login script, docs/relay.md) reports logins. It accepts login reports only, nothing else of the admin API. \"\" = off; Dovecot's auth policy reports still grant permits."`
	HookSocketGroup string        `toml:"hook_socket_group" doc:"Group given the hook socket, so that the user Dovecot's post-login service runs as can connect (user = $default_internal_user, i.e. dovecot). A group name or number; \"\" = the daemon's own group."`
}

// Firewall configures the nftables firewall modes.
type Firewall struct {
	Enabled         bool          `toml:"enabled" doc:"Manage table inet mailgate. Off (the default): mailgate touches no firewall at all, not even to remove its table (it warns at start when one is left: remove it with 'nft delete table inet mailgate'). When the table cannot be applied, the doors run all the same and every reconcile tries again."`
	Mode            string        `toml:"mode" doc:"public (no filtering beyond mailgate's bans), autoban (new connections to the mail ports rate-limited; offenders banned by the kernel for autoban_for; plus every ban mailgate makes), protected (as autoban, and the submission ports open only to trusted networks and to addresses that logged in over IMAP or POP3 within trusted_for), private (every mail port only for trusted networks and such addresses)."`
	RetrievalPorts  []int         `toml:"retrieval_ports" doc:"Ports for reading mail and filters: IMAP 143, 993, POP3 110, 995, ManageSieve 4190."`
	SubmissionPorts []int         `toml:"submission_ports" doc:"Submission ports: 587, 465."`
	SMTPPorts       []int         `toml:"smtp_ports" doc:"SMTP ports that get mailgate's bans only, e.g. [25]; never rate-limited or closed by a mode (port 25 must stay open to the world for incoming mail). Empty = port 25 is not touched."`
	Rate            int           `toml:"rate" doc:"autoban and protected: new connections per address per rate_per to the retrieval and submission ports above which the address is banned by the kernel (10/minute, a common choice). Trusted networks and addresses are exempt."`
	RatePer         time.Duration `toml:"rate_per" doc:"The unit of rate: 1s, 1m or 1h."`
	AutobanFor      time.Duration `toml:"autoban_for" doc:"How long the kernel bans a rate offender, 1s to 720h."`
	Bans            bool          `toml:"bans" doc:"Put mailgate's bans (brute force, 'mailgate ban add') into the kernel, so a banned address cannot even connect to a mail port."`
	TrustedFor      time.Duration `toml:"trusted_for" doc:"How long an address that logged in successfully over IMAP or POP3 is trusted (1 day): exempt from the rate limit, and in protected and private modes let through to the ports it would otherwise not reach. 1s to 720h."`
	ReconcileEvery  time.Duration `toml:"reconcile_every" doc:"How often the kernel sets are re-asserted from mailgate's state (an element deleted by hand comes back; nothing is ever flushed). 1s to 24h."`
	Priority        int           `toml:"priority" doc:"Priority of mailgate's input chain; below 0 runs it before a distribution's own filter table (priority 0), -199 to 300."`
}

// Limits configures the sending limits.
type Limits struct {
	MessagesPerHour   int             `toml:"messages_per_hour" doc:"Messages one sender may send in any hour, 0 to 10000000."`
	MessagesPerDay    int             `toml:"messages_per_day" doc:"Messages one sender may send in any 24 hours, 0 to 10000000."`
	RecipientsPerHour int             `toml:"recipients_per_hour" doc:"Recipients, over all messages, one sender may send to in any hour, 0 to 10000000."`
	RecipientsPerDay  int             `toml:"recipients_per_day" doc:"Recipients one sender may send to in any 24 hours, 0 to 10000000."`
	MaxAccounts       int             `toml:"max_accounts" doc:"Memory bound: the most senders counted at once, 1 to 10000000; the least recently active is forgotten first, with its counts."`
	Accounts          []AccountLimits `toml:"account" doc:"Limits for one account, replacing the four limits above as a whole: a limit left out of the entry is 0, no limit. account is a login, or @domain for every login of the domain; a login's entry wins over its domain's. Repeat the table for more accounts."`
}

// AccountLimits are one [[limits.account]] entry.
type AccountLimits struct {
	Account           string `toml:"account" doc:"A login (newsletter@example.com) or @domain (@example.com), case-insensitive."`
	MessagesPerHour   int    `toml:"messages_per_hour" doc:"Messages per hour, 0 = no limit."`
	MessagesPerDay    int    `toml:"messages_per_day" doc:"Messages per 24 hours, 0 = no limit."`
	RecipientsPerHour int    `toml:"recipients_per_hour" doc:"Recipients per hour, 0 = no limit."`
	RecipientsPerDay  int    `toml:"recipients_per_day" doc:"Recipients per 24 hours, 0 = no limit."`
}

// BruteForce configures the automatic bans. The defaults are the two rules
// of the seed: (a) 3 failures in a minute for one login from 2 or more
// addresses ban the login for 10 minutes; (b) 5 failures in a minute from
// one address ban the address for 5 minutes.
type BruteForce struct {
	Enabled    bool `toml:"enabled" doc:"Count failures and ban. Off: no automatic bans, and manual bans (mailgate ban add) still apply."`
	IPv6Prefix int  `toml:"ipv6_prefix" doc:"IPv6 clients are counted and banned per network of this size (one customer's /64 is one address)."`

	LoginFailures int           `toml:"login_failures" doc:"Rule (a): this many failures for one login within login_window, from at least login_min_addrs addresses, ban the login."`
	LoginWindow   time.Duration `toml:"login_window" doc:"Rule (a): the sliding window."`
	LoginMinAddrs int           `toml:"login_min_addrs" doc:"Rule (a): the failures must come from at least this many addresses (one address failing is rule (b)'s business)."`
	LoginBan      time.Duration `toml:"login_ban" doc:"Rule (a): how long the login stays banned. Attempts during the ban do not extend it."`
	LoginTarpit   time.Duration `toml:"login_tarpit" doc:"Rule (a): through nginx, attempts on a banned login wait this long (Auth-Wait), then are refused; through Dovecot they are refused at once, before the password is checked (Dovecot adds its own failure delay). Addresses known good for the login are let through."`

	AddrFailures int           `toml:"addr_failures" doc:"Rule (b): this many failures from one address within addr_window ban the address."`
	AddrWindow   time.Duration `toml:"addr_window" doc:"Rule (b): the sliding window."`
	AddrBan      time.Duration `toml:"addr_ban" doc:"Rule (b): how long the address stays banned."`

	HourWindow        time.Duration `toml:"hour_window" doc:"Slow attackers: the length of the 'hour' windows below (counted in quarters)."`
	DayWindow         time.Duration `toml:"day_window" doc:"Slow attackers: the length of the 'day' windows below (counted in sixths)."`
	AddrHourFailures  int           `toml:"addr_hour_failures" doc:"Slow attackers: this many failures from one address within an hour (counted in quarter-hours: 45 to 60 minutes) ban the address for addr_hour_ban. Repeats of one password and failures of a login from an address it logged in from before do not count. 0 = off."`
	AddrHourBan       time.Duration `toml:"addr_hour_ban" doc:"Slow attackers: how long addr_hour_failures bans the address."`
	AddrDayFailures   int           `toml:"addr_day_failures" doc:"Slow attackers: this many failures from one address within a day (counted in 4-hour steps: 20 to 24 hours) ban the address for addr_day_ban. 0 = off."`
	AddrDayBan        time.Duration `toml:"addr_day_ban" doc:"Slow attackers: how long addr_day_failures bans the address."`
	LoginHourFailures int           `toml:"login_hour_failures" doc:"Slow attackers: this many failures of one login within an hour, from addresses it never logged in from, ban the login for login_hour_ban (its known-good addresses keep working). 0 = off."`
	LoginHourBan      time.Duration `toml:"login_hour_ban" doc:"Slow attackers: how long login_hour_failures bans the login."`
	LoginDayFailures  int           `toml:"login_day_failures" doc:"Slow attackers: this many failures of one login within a day, from addresses it never logged in from, ban the login for login_day_ban. 0 = off."`
	LoginDayBan       time.Duration `toml:"login_day_ban" doc:"Slow attackers: how long login_day_failures bans the login."`

	SprayLogins int           `toml:"spray_logins" doc:"Password spraying: this many distinct logins failing from one address within spray_window ban the address. 0 = off; 10 is a good start."`
	SprayWindow time.Duration `toml:"spray_window" doc:"Password spraying: the sliding window."`
	SprayBan    time.Duration `toml:"spray_ban" doc:"Password spraying: how long the address stays banned."`

	RepeatFactor      float64       `toml:"repeat_factor" doc:"Progressive bans of addresses: an address banned again within repeat_memory of the end of its last ban gets the previous length times this factor (the first ban keeps the rule's length). 0 = off; 2 doubles each time."`
	LoginRepeatFactor float64       `toml:"login_repeat_factor" doc:"Progressive bans of logins: the same for logins, and a login whose last ban ended within repeat_memory is banned again by one failure from an address that never logged in to it (its owner's addresses keep working). 0 = off; 2 is a good start."`
	RepeatMemory      time.Duration `toml:"repeat_memory" doc:"Progressive bans: how long an earlier ban is remembered."`
	RepeatMax         time.Duration `toml:"repeat_max" doc:"Progressive bans: the longest automatic ban."`

	WidenAfter int `toml:"widen_after" doc:"IPv6 widening: when this many /64s inside one /56 are banned, ban the /56 (and likewise /56s inside a /48). 0 = off; 3 is a good start."`

	StaleRepeats int           `toml:"stale_repeats" doc:"Stale clients: the same wrong password from the same login and address counts once toward bans; after this many repeats the client is tarpitted and reported as stale_password."`
	StaleWindow  time.Duration `toml:"stale_window" doc:"Stale clients: how long a failed password is remembered."`
	StaleTarpit  time.Duration `toml:"stale_tarpit" doc:"Stale clients: how long a stale client's attempts wait (it is never banned)."`

	UnderAttack       bool          `toml:"under_attack" doc:"Under attack: when the whole server fails at least under_attack_min logins in 10 minutes and under_attack_factor times its usual 10 minutes of the last day (a password spray over many accounts), logins from addresses that never logged in to the account, and not from a country it logged in from, are refused (reason under_attack) until under_attack_hold after the wave. It refuses travellers on a new network meanwhile; 'mailgate attack end' lifts it. Off by default."`
	UnderAttackFactor float64       `toml:"under_attack_factor" doc:"Under attack: how many times the usual failure rate."`
	UnderAttackMin    int           `toml:"under_attack_min" doc:"Under attack: the fewest failures in 10 minutes that can mean an attack (a quiet server's usual rate is near 0)."`
	UnderAttackHold   time.Duration `toml:"under_attack_hold" doc:"Under attack: how long it lasts after the failures fell below the threshold."`

	KnownGoodFor time.Duration `toml:"known_good_for" doc:"Lockout-proof accounts: an address a login succeeded from within this time keeps working for that login while the login is banned."`

	MaxKeys      int `toml:"max_keys" doc:"Memory bound: the most addresses, logins and login/address pairs tracked (each); the least recently seen are forgotten first."`
	MaxKnownGood int `toml:"max_known_good" doc:"Memory bound: the most known-good login/address pairs kept."`
}

// Abuse is the brute-force tracker's configuration.
func (b BruteForce) Abuse() abuse.Config {
	return abuse.Config{
		IPv6Prefix:        b.IPv6Prefix,
		LoginFailures:     b.LoginFailures,
		LoginWindow:       b.LoginWindow,
		LoginMinAddrs:     b.LoginMinAddrs,
		LoginBan:          b.LoginBan,
		LoginTarpit:       b.LoginTarpit,
		AddrFailures:      b.AddrFailures,
		AddrWindow:        b.AddrWindow,
		AddrBan:           b.AddrBan,
		HourWindow:        b.HourWindow,
		DayWindow:         b.DayWindow,
		AddrHourFailures:  b.AddrHourFailures,
		AddrHourBan:       b.AddrHourBan,
		AddrDayFailures:   b.AddrDayFailures,
		AddrDayBan:        b.AddrDayBan,
		LoginHourFailures: b.LoginHourFailures,
		LoginHourBan:      b.LoginHourBan,
		LoginDayFailures:  b.LoginDayFailures,
		LoginDayBan:       b.LoginDayBan,
		SprayLogins:       b.SprayLogins,
		SprayWindow:       b.SprayWindow,
		SprayBan:          b.SprayBan,
		RepeatFactor:      b.RepeatFactor,
		LoginRepeatFactor: b.LoginRepeatFactor,
		RepeatMemory:      b.RepeatMemory,
		RepeatMax:         b.RepeatMax,
		WidenAfter:        b.WidenAfter,
		StaleRepeats:      b.StaleRepeats,
		StaleWindow:       b.StaleWindow,
		StaleTarpit:       b.StaleTarpit,
		SurgeEnabled:      b.UnderAttack,
		SurgeFactor:       b.UnderAttackFactor,
		SurgeMin:          b.UnderAttackMin,
		SurgeHold:         b.UnderAttackHold,
		KnownGoodFor:      b.KnownGoodFor,
		MaxKeys:           b.MaxKeys,
		MaxKnownGood:      b.MaxKnownGood,
	}
}

// Default returns the configuration used when no file is given, and the
// base every file is decoded onto.
func Default() Config {
	return Config{
		Log: Log{
			Level:     "info",
			Decisions: "stdout",
		},
		Store: Store{
			Driver: "sqlite",
			Path:   "./mailgate.db",
		},
		Cluster: Cluster{
			Redis:       "127.0.0.1:6379",
			DialTimeout: 2 * time.Second,
			Timeout:     2 * time.Second,
			KeyPrefix:   "mailgate:",
		},
		Console: Console{
			SessionTTL:     12 * time.Hour,
			SignInFailures: 10,
			SignInWindow:   15 * time.Minute,
			JournalUnit:    "mailgate.service",
		},
		Admin: Admin{
			Socket: "/run/mailgate/admin.sock",
		},
		Dovecot: Dovecot{
			Enabled:      true,
			Listen:       "127.0.0.1:4001",
			MaxBodyBytes: 16 << 10,
		},
		Policy: Policy{
			TrustedNetworks: []string{},
			DenyNetworks:    []string{},
		},
		GeoIP: GeoIP{
			Format:         "auto",
			AllowCountries: []string{},
			DenyCountries:  []string{},
			Private:        "allow",
			Unknown:        "list",
		},
		Nginx: Nginx{
			Listen:          "127.0.0.1:4002",
			SecretHeader:    "X-Auth-Key",
			VerifyWith:      "dovecot",
			DovecotAuth:     "/run/dovecot/auth-mailgate",
			IMAPVerify:      "127.0.0.1:143",
			Verify:          []string{"imap", "pop3", "smtp"},
			IMAPBackend:     "127.0.0.1:143",
			POP3Backend:     "127.0.0.1:110",
			SMTPBackend:     "127.0.0.1:25",
			FailWait:        3 * time.Second,
			MaxWaitAttempts: 10,
			SMTPErrorCode:   "535 5.7.8",
			FailMessage:     "Invalid login or password",
			VerifyTimeout:   10 * time.Second,
		},
		Postfix: Postfix{
			Enabled:        true,
			Listen:         "127.0.0.1:10040",
			RelayContext:   "relaycheck",
			TCPTableMap:    "client",
			IdleTimeout:    time.Minute,
			MaxConnections: 1000,
			LimitAction:    "defer",
		},
		Relay: Relay{
			Enabled:       false,
			TTL:           30 * time.Minute,
			Services:      []string{"imap", "pop3"},
			NeverNetworks: []string{"127.0.0.0/8", "::1/128"},
			IPv6Prefix:    64,
			SharedLogins:  3,
			SharedWindow:  10 * time.Minute,
			MaxPermits:    100_000,
			HookSocket:    "/run/mailgate/hook.sock",
		},
		Firewall: Firewall{
			Mode:            "autoban",
			RetrievalPorts:  []int{143, 993, 110, 995, 4190},
			SubmissionPorts: []int{587, 465},
			SMTPPorts:       []int{},
			Rate:            10,
			RatePer:         time.Minute,
			AutobanFor:      time.Hour,
			Bans:            true,
			TrustedFor:      24 * time.Hour,
			ReconcileEvery:  time.Minute,
			Priority:        -10,
		},
		DNSBLServer: DNSBLServer{
			Zone:          "bans.mailgate.local",
			TTL:           time.Minute,
			AllowNetworks: []string{"127.0.0.0/8", "::1/128"},
			Rate:          1000,
		},
		Limits: Limits{
			MaxAccounts: 100_000,
			Accounts:    []AccountLimits{},
		},
		BruteForce: BruteForce{
			Enabled:           true,
			IPv6Prefix:        64,
			LoginFailures:     3,
			LoginWindow:       time.Minute,
			LoginMinAddrs:     2,
			LoginBan:          10 * time.Minute,
			LoginTarpit:       time.Minute,
			AddrFailures:      5,
			AddrWindow:        time.Minute,
			AddrBan:           5 * time.Minute,
			HourWindow:        time.Hour,
			DayWindow:         24 * time.Hour,
			AddrHourFailures:  30,
			AddrHourBan:       time.Hour,
			AddrDayFailures:   100,
			AddrDayBan:        24 * time.Hour,
			LoginHourFailures: 20,
			LoginHourBan:      time.Hour,
			LoginDayFailures:  50,
			LoginDayBan:       24 * time.Hour,
			SprayWindow:       10 * time.Minute,
			SprayBan:          time.Hour,
			RepeatFactor:      2,
			RepeatMemory:      24 * time.Hour,
			RepeatMax:         24 * time.Hour,
			StaleRepeats:      2,
			StaleWindow:       time.Hour,
			StaleTarpit:       5 * time.Second,
			UnderAttackFactor: 10,
			UnderAttackMin:    30,
			UnderAttackHold:   30 * time.Minute,
			KnownGoodFor:      30 * 24 * time.Hour,
			MaxKeys:           1_000_000,
			MaxKnownGood:      1_000_000,
		},
		DNSBL: DNSBL{
			Zones:     []string{},
			Threshold: 1,
			Services:  []string{"imap", "pop3"},
			Timeout:   time.Second,
			Budget:    time.Second,
			MissTTL:   5 * time.Minute,
			CacheSize: 100_000,
		},
		Logs: defaultLogs(),
		Password: Password{
			MinLength:  12,
			MinClasses: 3,
			MinScore:   3,
			WeakDays:   30,
			CheckRate:  20,
		},
		Notifications: defaultNotifications(),
		Notify:        []NotifyTarget{},
		Messages:      map[string]string(policy.DefaultMessages()),
	}
}
