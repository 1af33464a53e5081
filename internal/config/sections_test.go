package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/dnsbld"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
)

// uncomment returns ex with the commented-out [[name]] block un-commented:
// its header line and the key lines right after it.
func uncomment(t *testing.T, ex, name string) string {
	t.Helper()
	lines := strings.Split(ex, "\n")
	for i, l := range lines {
		if l != "# [["+name+"]]" {
			continue
		}
		lines[i] = strings.TrimPrefix(l, "# ")
		for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "# ") && strings.Contains(lines[j], " = "); j++ {
			lines[j] = strings.TrimPrefix(lines[j], "# ")
		}
		return strings.Join(lines, "\n")
	}
	t.Fatalf("the example has no commented-out [[%s]]", name)
	return ""
}

// TestExampleEntries: removing the "# " of a commented-out example entry
// gives a valid file with exactly that entry.
func TestExampleEntries(t *testing.T) {
	ex := uncomment(t, string(Example()), "limits.account")
	cfg, err := Parse([]byte(ex))
	if err != nil {
		t.Fatalf("%v\n%s", err, ex)
	}
	entry, _ := exampleEntry("limits.account")
	want := Default()
	want.Limits.Accounts = []AccountLimits{entry.(AccountLimits)}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("uncommented example:\n got %+v\nwant %+v", cfg.Limits, want.Limits)
	}
	sl := cfg.Limits.SendLimit()
	if l := sl.Accounts["newsletter@example.com"]; l.MessagesPerHour != 1000 || l.RecipientsPerDay != 20000 {
		t.Errorf("SendLimit of the example entry: %+v", sl)
	}
}

// The defaults agree with the packages' own: the file and a config-less
// daemon behave alike.
func TestDefaultSections(t *testing.T) {
	d := Default()
	rc, err := d.Relay.RelayConfig()
	if err != nil {
		t.Fatal(err)
	}
	if want := relay.DefaultConfig(); !reflect.DeepEqual(rc, want) {
		t.Errorf("Default().Relay.RelayConfig() =\n%+v\nwant relay.DefaultConfig()\n%+v", rc, want)
	}
	if sl, want := d.Limits.SendLimit(), sendlimit.DefaultConfig(); !reflect.DeepEqual(sl, want) {
		t.Errorf("Default().Limits.SendLimit() = %+v, want sendlimit.DefaultConfig() %+v", sl, want)
	}
	// DESIGN.md §6: the Postfix policy server listens on 127.0.0.1:10040.
	if d.Postfix.Listen != "127.0.0.1:10040" || !d.Postfix.Enabled {
		t.Errorf("postfix default listener: %+v", d.Postfix)
	}
}

func TestFullSections(t *testing.T) {
	cfg, err := Load("testdata/good/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfg.Relay.RelayConfig()
	if err != nil {
		t.Fatal(err)
	}
	wantRelay := relay.Config{
		TTL:      time.Hour,
		Services: []rules.Service{rules.IMAP, rules.POP3},
		Never: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
			netip.MustParsePrefix("192.0.2.0/24")},
		IPv6Prefix: 128, SharedLogins: 5, SharedWindow: time.Hour, RefuseShared: true, MaxPermits: 5000,
	}
	if !reflect.DeepEqual(rc, wantRelay) {
		t.Errorf("RelayConfig =\n%+v\nwant\n%+v", rc, wantRelay)
	}
	if err := rc.Validate(); err != nil {
		t.Errorf("relay refuses what config accepted: %v", err)
	}
	if cfg.Relay.HookSocketGroup != "dovecot" || cfg.Relay.HookSocket != "/run/mailgate/hook.sock" {
		t.Errorf("hook socket: %+v", cfg.Relay)
	}

	sl := cfg.Limits.SendLimit()
	wantLimits := sendlimit.Config{
		Default: sendlimit.Limits{MessagesPerHour: 100, MessagesPerDay: 500, RecipientsPerHour: 300, RecipientsPerDay: 1000},
		Accounts: map[string]sendlimit.Limits{
			"newsletter@example.com": {MessagesPerHour: 1000, RecipientsPerDay: 50000},
			"@shop.example.com":      {MessagesPerDay: 2000},
		},
		MaxAccounts: 20000,
	}
	if !reflect.DeepEqual(sl, wantLimits) {
		t.Errorf("SendLimit =\n%+v\nwant\n%+v", sl, wantLimits)
	}
	if err := sl.Validate(); err != nil {
		t.Errorf("sendlimit refuses what config accepted: %v", err)
	}

	want := Postfix{Enabled: true, Listen: "127.0.0.1:10040", Socket: "/var/spool/postfix/private/mailgate",
		RelayContext: "pbsmtp", RelayListen: "127.0.0.1:10043", SocketmapListen: "127.0.0.1:10041",
		TCPTableListen: "[::1]:10042", TCPTableMap: "block", IdleTimeout: 5 * time.Minute, MaxConnections: 500,
		LimitAction: "reject"}
	if cfg.Postfix != want {
		t.Errorf("postfix = %+v, want %+v", cfg.Postfix, want)
	}
	// The table array is written back as [[limits.account]] tables.
	if out := string(encode(&cfg)); strings.Count(out, "\n[[limits.account]]\n") != 2 {
		t.Errorf("encode wrote the accounts as:\n%s", out)
	}
}

func TestRelayConfigErrorNamesKey(t *testing.T) {
	r := Default().Relay
	r.Services = []string{"imap", "uucp"}
	if _, err := r.RelayConfig(); err == nil || !strings.HasPrefix(err.Error(), "relay.services[1]: ") {
		t.Errorf("RelayConfig with a bad service: %v", err)
	}
	r = Default().Relay
	r.NeverNetworks = []string{"127.0.0.0/8", "10.0.0.300"}
	if _, err := r.RelayConfig(); err == nil || !strings.HasPrefix(err.Error(), "relay.never_networks[1]: ") {
		t.Errorf("RelayConfig with a bad network: %v", err)
	}
}

func TestSendLimitLeavesOutInvalid(t *testing.T) {
	l := Default().Limits
	l.Accounts = []AccountLimits{{Account: "*", MessagesPerHour: 1}, {Account: "a b", MessagesPerHour: 2}, {Account: " A@B.example ", MessagesPerHour: 3}}
	sl := l.SendLimit()
	if len(sl.Accounts) != 1 || sl.Accounts["a@b.example"].MessagesPerHour != 3 {
		t.Errorf("SendLimit = %+v", sl.Accounts)
	}
	// A Unicode space passes rules.NormalizeAccount but not sendlimit.
	if _, err := limitAccount("a\u00a0b@example.com"); err == nil {
		t.Error("limitAccount accepted a no-break space")
	}
}

// problemKeys returns the keys of Validate's problems.
func problemKeys(t *testing.T, c *Config) []string {
	t.Helper()
	err := c.Validate()
	if err == nil {
		return nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Validate = %v, want a *config.Error", err)
	}
	var keys []string
	for _, p := range ce.Problems {
		var ke *KeyError
		if !errors.As(p, &ke) {
			t.Fatalf("problem %v is not a *KeyError", p)
		}
		keys = append(keys, ke.Key)
	}
	return keys
}

func TestValidateSections(t *testing.T) {
	c := Default()
	c.Postfix.Listen = "localhost"
	c.Postfix.Socket = "/" + strings.Repeat("s", 200)
	c.Postfix.RelayContext = "a=b"
	c.Postfix.RelayListen = "127.0.0.1:99999"
	c.Postfix.SocketmapListen = "[::1]"
	c.Postfix.TCPTableListen = "bad_host:1"
	c.Postfix.TCPTableMap = ""
	c.Postfix.IdleTimeout = 25 * time.Hour
	c.Postfix.MaxConnections = 100_001
	c.Postfix.LimitAction = "DEFER"
	c.Relay.Enabled, c.Dovecot.APIKey = true, "0123456789abcdef0123"
	c.Relay.TTL = 0
	c.Relay.Services = []string{"imap", "IMAP"}
	c.Relay.NeverNetworks = make([]string, 257)
	for i := range c.Relay.NeverNetworks {
		c.Relay.NeverNetworks[i] = "192.0.2.1"
	}
	c.Relay.NeverNetworks[256] = "bogus"
	c.Relay.IPv6Prefix = 129
	c.Relay.SharedLogins = 1001
	c.Relay.SharedWindow = -time.Second
	c.Relay.MaxPermits = 10_000_001
	c.Relay.HookSocket = "/run/x\x00"
	c.Relay.HookSocketGroup = strings.Repeat("g", 33)
	c.Limits.MessagesPerDay = -1
	c.Limits.RecipientsPerHour = maxSendLimit + 1
	c.Limits.MaxAccounts = maxSendAccounts + 1
	c.Limits.Accounts = []AccountLimits{{Account: "x@example.com", MessagesPerDay: -2}, {Account: "X@example.com "}}
	want := []string{
		"postfix.listen", "postfix.relay_listen", "postfix.socketmap_listen", "postfix.tcp_table_listen",
		"postfix.socket", "postfix.relay_context", "postfix.tcp_table_map", "postfix.idle_timeout",
		"postfix.max_connections", "postfix.limit_action",
		"relay.ttl", "relay.services[1]", "relay.never_networks", "relay.never_networks[256]", "relay.ipv6_prefix",
		"relay.shared_logins", "relay.shared_window", "relay.max_permits", "relay.hook_socket", "relay.hook_socket_group",
		"limits.messages_per_day", "limits.recipients_per_hour", "limits.max_accounts",
		"limits.account[0].messages_per_day", "limits.account[1].account",
	}
	if got := problemKeys(t, &c); !reflect.DeepEqual(got, want) {
		t.Errorf("problem keys:\n got %q\nwant %q\n%v", got, want, c.Validate())
	}
}

// A door that is off has no listener, so its addresses are not checked
// and take no port.
func TestListenersOfDisabledDoors(t *testing.T) {
	c := Default()
	c.Postfix.Enabled = false
	c.Postfix.Listen = "garbage"
	c.Postfix.Socket = "relative"
	c.Postfix.SocketmapListen = c.Dovecot.Listen
	c.Relay.Enabled = false
	c.Relay.HookSocket = c.Admin.Socket
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Postfix.Enabled = true
	if got, want := problemKeys(t, &c), []string{"postfix.listen", "postfix.socket", "postfix.socketmap_listen"}; !reflect.DeepEqual(got, want) {
		t.Errorf("postfix enabled: %q, want %q", got, want)
	}
	c = Default()
	c.Relay.Enabled, c.Dovecot.APIKey = true, "0123456789abcdef0123"
	c.Relay.HookSocket = c.Admin.Socket
	if got, want := problemKeys(t, &c), []string{"relay.hook_socket"}; !reflect.DeepEqual(got, want) {
		t.Errorf("relay enabled: %q, want %q", got, want)
	}
	// Postfix with only a unix socket, or only socketmap, is fine.
	c = Default()
	c.Postfix.Listen = ""
	c.Postfix.Socket = "/var/spool/postfix/private/mailgate"
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	c.Postfix.Socket = ""
	c.Postfix.SocketmapListen = "127.0.0.1:10041"
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestSameListenAddr(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1:4001", "127.0.0.1:4001", true},
		{"127.0.0.1:4001", "127.0.0.1:4002", false},
		{"127.0.0.1:4001", "127.0.0.2:4001", false},
		{":4001", "127.0.0.2:4001", true},
		{"0.0.0.0:4001", "[::1]:4001", true},
		{"[::]:4001", "127.0.0.1:4001", true},
		{"[::1]:4001", "[0:0::1]:4001", true},
		{"[::ffff:127.0.0.1]:4001", "127.0.0.1:4001", true},
		{"localhost:4001", "LocalHost.:4001", true},
		{"localhost:4001", "127.0.0.1:4001", false}, // no DNS
		{"127.0.0.1:0", "127.0.0.1:0", false},       // each gets a free port
		{":0", "127.0.0.1:0", false},
		{"127.0.0.1", "127.0.0.1", false}, // not host:port: reported elsewhere
		{"127.0.0.1:x", "127.0.0.1:x", false},
	} {
		if got := sameListenAddr(tc.a, tc.b); got != tc.same {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
		if got := sameListenAddr(tc.b, tc.a); got != tc.same {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.same)
		}
	}
}

func TestCheckPolicyContextAndGroup(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "relaycheck": true, "relay-check_2.x": true, strings.Repeat("x", 100): true,
		strings.Repeat("x", 101): false, "a b": false, "a,b": false, "{a}": false, "a=b": false, "ä": false, "a\tb": false,
	} {
		if err := checkPolicyContext(s); (err == nil) != ok {
			t.Errorf("checkPolicyContext(%q) = %v, want ok=%v", s, err, ok)
		}
	}
	for s, ok := range map[string]bool{
		"dovecot": true, "mail-users": true, "Domain_Users": true, "1001": true, "machine$": true, strings.Repeat("g", 32): true,
		"": false, "-x": false, "a b": false, "a$b": false, "grüppe": false, strings.Repeat("g", 33): false, "a:b": false,
	} {
		if validGroup(s) != ok {
			t.Errorf("validGroup(%q) = %v, want %v", s, !ok, ok)
		}
	}
}

// The config's brute-force defaults are the tracker's: one set of numbers.
func TestBruteForceDefaultsAreTheTrackers(t *testing.T) {
	if got, want := Default().BruteForce.Abuse(), abuse.DefaultConfig(); got != want {
		t.Errorf("config defaults:\n%+v\nabuse.DefaultConfig:\n%+v", got, want)
	}
}

func TestDNSBLServer(t *testing.T) {
	cfg, err := Load("testdata/good/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.DNSBLServer.Server()
	if err != nil {
		t.Fatal(err)
	}
	want := dnsbld.Config{Zone: "Bans.Example.NET.", TTL: 30 * time.Second, Rate: 0, Allow: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.0.2.0/28")}}
	if cfg.DNSBLServer.Listen != "127.0.0.1:5353" || !reflect.DeepEqual(c, want) {
		t.Errorf("got %q %+v, want %+v", cfg.DNSBLServer.Listen, c, want)
	}
	def := Default().DNSBLServer
	if def.Listen != "" {
		t.Errorf("the DNSBL server is on by default (%q)", def.Listen)
	}
	dc, err := def.Server()
	if err != nil || dc.Zone != "bans.mailgate.local" || dc.TTL != time.Minute || len(dc.Allow) != 2 || !dc.Allow[0].Addr().IsLoopback() || !dc.Allow[1].Addr().IsLoopback() {
		t.Errorf("defaults %+v %v: want bans.mailgate.local, 1m, loopback only", dc, err)
	}
}
