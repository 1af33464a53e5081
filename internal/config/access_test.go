package config

import (
	"strings"
	"testing"
)

func TestDovecotKeyFile(t *testing.T) {
	c := Default()
	if got := c.DovecotKeyFile(); got != "dovecot-api-key" {
		t.Errorf("defaults: %q, want dovecot-api-key (beside ./mailgate.db)", got)
	}
	c.Store.Path = "/var/lib/mailgate/mailgate.db"
	if got := c.DovecotKeyFile(); got != "/var/lib/mailgate/dovecot-api-key" {
		t.Errorf("store in /var/lib/mailgate: %q", got)
	}
	c.Dovecot.APIKeyFile = "/etc/mailgate/dovecot.key"
	if got := c.DovecotKeyFile(); got != "/etc/mailgate/dovecot.key" {
		t.Errorf("api_key_file set: %q", got)
	}
	c.Dovecot.APIKeyFile = ""
	c.Dovecot.APIKey = "0123456789abcdef0123"
	if got := c.DovecotKeyFile(); got != "" {
		t.Errorf("api_key set: %q, want no file", got)
	}
}

func TestWarnings(t *testing.T) {
	if d := Default(); len(d.Warnings()) != 0 {
		t.Errorf("defaults warn: %q", d.Warnings())
	}
	for _, c := range []struct {
		name string
		set  func(c *Config)
		want string // "" = no warning
	}{
		{"admin on loopback", func(c *Config) { c.Admin.Listen = "127.0.0.1:4080" }, ""},
		{"admin on ::1", func(c *Config) { c.Admin.Listen = "[::1]:4080" }, ""},
		{"admin on localhost", func(c *Config) { c.Admin.Listen = "localhost:4080" }, ""},
		{"admin on every address", func(c *Config) { c.Admin.Listen = ":4080" }, "admin.listen: :4080 is not a loopback address"},
		{"metrics on loopback", func(c *Config) { c.Metrics.Listen = "127.0.0.1:9477" }, ""},
		{"metrics on every address", func(c *Config) { c.Metrics.Listen = "0.0.0.0:9477" }, "metrics.listen: 0.0.0.0:9477 is not a loopback address"},
		{"admin on a LAN address", func(c *Config) { c.Admin.Listen = "192.0.2.1:4080" }, "TLS-terminating proxy"},
		{"admin on a host name", func(c *Config) { c.Admin.Listen = "mail.example.com:4080" }, "admin.listen"},
		{"dovecot on every address", func(c *Config) { c.Dovecot.Listen = "0.0.0.0:4001" }, "dovecot.listen: 0.0.0.0:4001 is not a loopback address"},
		{"dovecot off", func(c *Config) { c.Dovecot.Enabled = false; c.Dovecot.Listen = "0.0.0.0:4001" }, ""},
		{"nginx on a unix socket", func(c *Config) {
			c.Nginx.Enabled = true
			c.Nginx.Listen = "/run/mailgate/nginx.sock"
			c.Nginx.SocketGroup = "www-data"
		}, ""},
		{"nginx on a unix socket without a group", func(c *Config) {
			c.Nginx.Enabled = true
			c.Nginx.Listen = "/run/mailgate/nginx.sock"
		}, "nginx.socket_group: empty"},
		{"nginx on a LAN address", func(c *Config) { c.Nginx.Enabled = true; c.Nginx.Listen = "10.0.0.1:4002" }, "nginx.listen: 10.0.0.1:4002"},
		{"nginx checks passwords over TCP", func(c *Config) { c.Nginx.Enabled = true; c.Nginx.DovecotAuth = "127.0.0.1:12345" }, "nginx.dovecot_auth: 127.0.0.1:12345 is TCP"},
		{"password check on loopback", func(c *Config) { c.Password.CheckListen = "127.0.0.1:4081" }, ""},
		{"password check on every address", func(c *Config) { c.Password.CheckListen = ":4081" }, "password.check_listen: :4081 is not a loopback address"},
		{"weak refusal with the policy server on TCP", func(c *Config) {
			c.Nginx.Enabled = true
			c.Nginx.Listen = "/run/mailgate/nginx.sock"
			c.Nginx.SocketGroup = "www-data"
			c.Password.CheckAtLogin, c.Password.RefuseWeakSubmission = true, true
		}, "password.refuse_weak_submission: the Postfix policy server listens on TCP"},
		{"weak refusal with the policy server on a unix socket", func(c *Config) {
			c.Nginx.Enabled = true
			c.Nginx.Listen = "/run/mailgate/nginx.sock"
			c.Nginx.SocketGroup = "www-data"
			c.Postfix.Listen, c.Postfix.Socket = "", "/var/spool/postfix/private/mailgate"
			c.Password.CheckAtLogin, c.Password.RefuseWeakSubmission = true, true
		}, ""},
		{"check at login without nginx", func(c *Config) { c.Password.CheckAtLogin = true }, "password.check_at_login: the nginx door is off"},
		{"nginx checks passwords with imap", func(c *Config) {
			c.Nginx.Enabled = true
			c.Nginx.VerifyWith = "imap"
			c.Nginx.DovecotAuth = "127.0.0.1:12345"
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.set(&cfg)
			w := strings.Join(cfg.Warnings(), "\n")
			if c.want == "" && w != "" || !strings.Contains(w, c.want) {
				t.Errorf("warnings %q, want %q", w, c.want)
			}
		})
	}
}

func TestDNSBLServerWarning(t *testing.T) {
	c := Default()
	c.DNSBLServer.Listen = "0.0.0.0:53"
	c.DNSBLServer.AllowNetworks = []string{"127.0.0.0/8", "0.0.0.0/0"}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "dnsbl_server.allow_networks: 0.0.0.0/0") {
		t.Errorf("no warning for a world-open DNSBL listener: %q", w)
	}
	c.DNSBLServer.AllowNetworks = []string{"127.0.0.0/8", "192.0.2.0/24"}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "dnsbl_server") {
		t.Errorf("a warning for a narrow allow list: %q", w)
	}
}
