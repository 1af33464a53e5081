// Package config is mailgate's configuration: one strict TOML file whose
// defaults live in code. Unknown keys are errors, and every error names its
// key path. The commented example etc/mailgate.toml is generated from the
// struct below (the `doc` tags), so it cannot drift from the code.
//
// Only cmd/mailgate imports this package; it hands plain values to the
// packages it wires.
package config

import "mailgate/internal/policy"

// DefaultPath is where mailgate looks for its config when --config is not
// given. When that file does not exist, mailgate runs on Default().
const DefaultPath = "/etc/mailgate/mailgate.toml"

// Config is the whole configuration file.
type Config struct {
	Log     Log     `toml:"log" doc:"Logging. Diagnostics go to stderr; decision lines (one per verdict) go where 'decisions' says."`
	Store   Store   `toml:"store" doc:"Where rules and their audit trail are kept."`
	Admin   Admin   `toml:"admin" doc:"The admin API used by the mailgate CLI (and later the web UI)."`
	Dovecot Dovecot `toml:"dovecot" doc:"The Dovecot auth policy door (auth_policy_server_url). See docs/dovecot.md."`
	Policy  Policy  `toml:"policy" doc:"What the decision engine checks before any account rule."`
	// Messages maps a reason code to the text the mail user sees when
	// refused for that reason.
	Messages map[string]string `toml:"messages" doc:"Texts a refused mail user sees, by reason code (the reason= of the decision line). Placeholders: {service} (e.g. POP3), {ip}, {login}. One line, at most 512 bytes. Dovecot shows them as '[ALERT] text' (IMAP), '-ERR [AUTH] text' (POP3), '535 5.7.8 text' (SMTP). A reason left out keeps the text shown here."`
}

// Log configures logging.
type Log struct {
	Level     string `toml:"level" doc:"Diagnostic log level: debug, info, warn or error."`
	Decisions string `toml:"decisions" doc:"Where decision lines go: stdout, stderr, off, or a file path (appended to; reopened on SIGHUP)."`
}

// Store configures persistence.
type Store struct {
	Driver string `toml:"driver" doc:"Only sqlite (embedded) for now."`
	Path   string `toml:"path" doc:"The SQLite database file. On a server use /var/lib/mailgate/mailgate.db."`
}

// Admin configures the admin API.
type Admin struct {
	Socket string `toml:"socket" doc:"Unix socket of the admin API; the CLI connects here. Only root and the socket's group may use it."`
	Listen string `toml:"listen" doc:"Optional TCP host:port for the admin API (e.g. 127.0.0.1:4080). Needs token."`
	Token  string `toml:"token" doc:"Bearer token required on the TCP listener (not on the unix socket); at least 16 characters, e.g. from 'openssl rand -hex 24'."`
}

// Dovecot configures the Dovecot auth policy door.
type Dovecot struct {
	Enabled      bool   `toml:"enabled" doc:"Serve the Dovecot auth policy API."`
	Listen       string `toml:"listen" doc:"host:port that Dovecot's auth_policy_server_url points at."`
	APIKey       string `toml:"api_key" doc:"If set, Dovecot must send it: auth_policy_server_api_header = X-API-Key: <key> (or user:<key>@ in the URL)."`
	MaxBodyBytes int64  `toml:"max_body_bytes" doc:"Largest request body accepted, 1024 to 1048576 bytes; larger requests get HTTP 413."`
}

// Policy configures the global checks.
type Policy struct {
	TrustedNetworks []string `toml:"trusted_networks" doc:"Addresses and CIDR networks (IPv4 or IPv6) always allowed, before any other check (webmail host, office), e.g. [\"192.0.2.10\", \"2001:db8:1::/48\"]. Rules added with 'mailgate rule add --global --allow' join these."`
	DenyNetworks    []string `toml:"deny_networks" doc:"Addresses and CIDR networks always refused, unless trusted. Rules added with 'mailgate rule add --global --deny' join these."`
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
		Messages: map[string]string(policy.DefaultMessages()),
	}
}
