package config

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// DefaultKeyFileName is the name of the Dovecot door's key file, in the
// directory of store.path, when dovecot.api_key and api_key_file are empty.
const DefaultKeyFileName = "dovecot-api-key"

// DovecotKeyFile is the file holding the Dovecot door's key: "" when
// dovecot.api_key sets the key itself, otherwise api_key_file or its
// default beside the store.
func (c *Config) DovecotKeyFile() string {
	switch {
	case c.Dovecot.APIKey != "":
		return ""
	case c.Dovecot.APIKeyFile != "":
		return c.Dovecot.APIKeyFile
	}
	return filepath.Join(filepath.Dir(c.Store.Path), DefaultKeyFileName)
}

// ConsoleUsersFile is the console's users file: console.users_file, or
// console-users beside the store.
func (c *Config) ConsoleUsersFile() string {
	if c.Console.UsersFile != "" {
		return c.Console.UsersFile
	}
	return filepath.Join(filepath.Dir(c.Store.Path), "console-users")
}

// Unix reports whether the nginx door listens on a unix socket (listen is
// an absolute path) rather than TCP.
func (n *Nginx) Unix() bool { return strings.HasPrefix(n.Listen, "/") }

// Warnings lists what a valid config leaves open to others, each naming
// its key: serve logs them at start and config check prints them.
func (c *Config) Warnings() []string {
	w := append(c.postgresWarnings(), c.clusterWarnings()...)
	if c.Admin.Listen != "" && !loopbackListen(c.Admin.Listen) {
		w = append(w, "admin.listen: "+c.Admin.Listen+" is not a loopback address: the admin API speaks plain HTTP, so the bearer token and every change travel unencrypted; listen on 127.0.0.1 (or ::1) and put a TLS-terminating proxy in front for remote use (docs/cli.md)")
	}
	if c.Password.CheckListen != "" && !loopbackListen(c.Password.CheckListen) {
		w = append(w, "password.check_listen: "+c.Password.CheckListen+" is not a loopback address: the passwords checked travel unencrypted; keep it on loopback for a webmail on the same host, or put a TLS-terminating proxy in front (docs/passwords.md)")
	}
	if c.Password.RefuseWeakSubmission && c.Postfix.Enabled && (c.Postfix.Listen != "" || c.Postfix.RelayListen != "") {
		w = append(w, "password.refuse_weak_submission: the Postfix policy server listens on TCP, which takes no key: any local user can ask it about a sasl_username and learn whether that login has a weak password; use postfix.socket (a unix socket in Postfix's private/ directory) instead (docs/passwords.md)")
	}
	if c.CheckAtLoginWithoutNginx() {
		w = append(w, "password.check_at_login: the nginx door is off ([nginx] enabled = false), and it is the only door that sees passwords: no login is checked")
	}
	if c.Console.Listen != "" && !loopbackListen(c.Console.Listen) {
		w = append(w, "console.listen: "+c.Console.Listen+" is not a loopback address: the console speaks plain HTTP, so a sign-in and its session cookie cross the network in the clear; listen on 127.0.0.1 (or ::1) and put nginx with TLS in front (docs/console.md)")
	}
	if c.Metrics.Listen != "" && !loopbackListen(c.Metrics.Listen) {
		w = append(w, "metrics.listen: "+c.Metrics.Listen+" is not a loopback address: anyone who reaches it reads how many logins each door refuses, and why, with no password; listen on 127.0.0.1 (or ::1) and scrape through a tunnel or a TLS proxy (docs/metrics.md)")
	}
	if c.Dovecot.Enabled && !loopbackListen(c.Dovecot.Listen) {
		w = append(w, "dovecot.listen: "+c.Dovecot.Listen+" is not a loopback address: the API key travels unencrypted; keep the door on loopback or a private network only Dovecot's hosts can reach")
	}
	if c.Nginx.Enabled && !c.Nginx.Unix() && !loopbackListen(c.Nginx.Listen) {
		w = append(w, "nginx.listen: "+c.Nginx.Listen+" is not a loopback address: the secret and every password nginx forwards travel unencrypted; keep the door on loopback or a unix socket")
	}
	if c.Nginx.Enabled && c.Nginx.Unix() && c.Nginx.SocketGroup == "" {
		w = append(w, "nginx.socket_group: empty, so the socket "+c.Nginx.Listen+" gets mailgate's own group, which nginx's worker processes are seldom in; set the group they run as (www-data on Debian)")
	}
	if c.Nginx.Enabled && c.Nginx.VerifyWith == "dovecot" && !strings.HasPrefix(c.Nginx.DovecotAuth, "/") {
		w = append(w, "nginx.dovecot_auth: "+c.Nginx.DovecotAuth+" is TCP: every local user who can reach Dovecot's auth listener can check passwords and claim any client address; use a unix_listener only mailgate's user may open (etc/dovecot/96-mailgate-auth.conf)")
	}
	w = append(w, c.DNSBL.warnings()...)
	if c.DNSBLServer.Listen != "" {
		allow, _ := parseNetworks("dnsbl_server.allow_networks", c.DNSBLServer.AllowNetworks)
		for _, p := range allow {
			if p.Bits() < 8 {
				w = append(w, "dnsbl_server.allow_networks: "+p.String()+" lets almost anyone ask which addresses mailgate bans, why and until when, and use the listener to reflect traffic; list only your own servers' networks (docs/dnsbl-server.md)")
				break
			}
		}
	}
	return w
}

// loopbackListen reports whether a host:port listen address takes
// connections from this host only. A host name other than localhost is
// not known to be loopback (no DNS here).
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// CheckAtLoginWithoutNginx reports password.check_at_login set while the
// nginx door, the only one that sees passwords, is off.
func (c *Config) CheckAtLoginWithoutNginx() bool {
	return c.Password.CheckAtLogin && !c.Nginx.Enabled
}
