package config

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailgate/internal/dnsbl"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// Bounds of the [dnsbl] settings.
const (
	maxDNSBLBudget    = 1900 * time.Millisecond // Dovecot's policy timeout is 2 s
	maxDNSBLThreshold = 10_000
	maxDNSBLCache     = 10_000_000
)

func (d *DNSBL) validate(bad func(key, format string, args ...any)) {
	if len(d.Zones) > dnsbl.MaxZones {
		bad("dnsbl.zones", "%d zones, more than %d", len(d.Zones), dnsbl.MaxZones)
	}
	seen := map[string]int{}
	for i, s := range d.Zones {
		key := "dnsbl.zones[" + strconv.Itoa(i) + "]"
		z, err := dnsbl.ParseZone(s)
		if err != nil {
			bad(key, "%v (want name=filter*weight, e.g. zen.spamhaus.org=127.0.0.[4..7]*3)", err)
			continue
		}
		if j, dup := seen[z.Name]; dup {
			bad(key, "zone %s is already dnsbl.zones[%d]; merge the filters into one entry", z.Name, j)
			continue
		}
		seen[z.Name] = i
	}
	if d.Threshold < 1 || d.Threshold > maxDNSBLThreshold {
		bad("dnsbl.threshold", "%d is out of range (want 1 to %d)", d.Threshold, maxDNSBLThreshold)
	}
	if len(d.Services) == 0 {
		bad("dnsbl.services", "empty (want the services to check, e.g. [\"imap\", \"pop3\"])")
	}
	svcs := map[rules.Service]int{}
	for i, name := range d.Services {
		key := "dnsbl.services[" + strconv.Itoa(i) + "]"
		svc, err := rules.ParseService(name)
		switch {
		case err != nil || svc == rules.Sieve:
			bad(key, "%q is not a service checked against blocklists (want imap, pop3, submission or smtp)", name)
		case svc == rules.AllServices:
			bad(key, "%q: name the services (imap, pop3, submission, smtp)", name)
		default:
			if j, dup := svcs[svc]; dup {
				bad(key, "%s is already dnsbl.services[%d]", svc, j)
			} else {
				svcs[svc] = i
			}
		}
	}
	if d.Resolver != "" {
		if _, err := dnsbl.ParseResolver(d.Resolver); err != nil {
			bad("dnsbl.resolver", "%v", err)
		}
	}
	if d.Timeout < 10*time.Millisecond || d.Timeout > 10*time.Second {
		bad("dnsbl.timeout", "%v is out of range (want 10ms to 10s)", d.Timeout)
	}
	if d.Budget < 10*time.Millisecond || d.Budget > maxDNSBLBudget {
		bad("dnsbl.budget", "%v is out of range (want 10ms to 1.9s: Dovecot waits 2s for its policy server)", d.Budget)
	}
	if d.MissTTL < time.Second || d.MissTTL > 24*time.Hour {
		bad("dnsbl.miss_ttl", "%v is out of range (want 1s to 24h)", d.MissTTL)
	}
	if d.CacheSize < 1 || d.CacheSize > maxDNSBLCache {
		bad("dnsbl.cache_size", "%d is out of range (want 1 to %d)", d.CacheSize, maxDNSBLCache)
	}
}

// Checker returns the lookup settings; ok is false when dnsbl is off (no
// zones). The config must have passed Validate.
func (d *DNSBL) Checker() (cfg dnsbl.Config, ok bool, err error) {
	if len(d.Zones) == 0 {
		return cfg, false, nil
	}
	zones, err := dnsbl.ParseZones(d.Zones)
	if err != nil {
		return cfg, false, err
	}
	return dnsbl.Config{Zones: zones, Resolver: d.Resolver, Timeout: d.Timeout, Budget: d.Budget, MissTTL: d.MissTTL, CacheSize: d.CacheSize}, true, nil
}

// Policy is the engine's side: threshold and services; off without zones.
func (d *DNSBL) Policy() policy.DNSBLPolicy {
	var p policy.DNSBLPolicy
	if len(d.Zones) == 0 {
		return p
	}
	p.Threshold = d.Threshold
	for _, name := range d.Services {
		if svc, err := rules.ParseService(name); err == nil && int(svc) < len(p.Services) {
			p.Services[svc] = true
		}
	}
	return p
}

// publicResolvers are large public resolvers most blocklists refuse
// (Spamhaus answers them 127.255.255.254).
var publicResolvers = []string{"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222", "208.67.220.220"}

// warnings are [dnsbl] settings that work but are probably wrong.
func (d *DNSBL) warnings() []string {
	var w []string
	pbl := []netip.Addr{netip.MustParseAddr("127.0.0.10"), netip.MustParseAddr("127.0.0.11")}
	for i, s := range d.Zones {
		z, err := dnsbl.ParseZone(s)
		if err != nil || !strings.Contains(z.Name, "spamhaus") {
			continue
		}
		for _, a := range pbl {
			if z.Matches(a) {
				w = append(w, "dnsbl.zones["+strconv.Itoa(i)+"]: "+z.String()+" counts "+a.String()+", Spamhaus' PBL (dynamic and home ranges): it would refuse customers logging in from home; leave PBL codes out, e.g. zen.spamhaus.org=127.0.0.[4..7] (docs/dnsbl.md)")
				break
			}
		}
	}
	if d.Resolver != "" {
		if r, err := dnsbl.ParseResolver(d.Resolver); err == nil {
			host, _, _ := strings.Cut(r, ":")
			if slices.Contains(publicResolvers, host) {
				w = append(w, "dnsbl.resolver: "+d.Resolver+" is a public resolver; most blocklists refuse its queries (127.255.255.x answers) and it learns every client address: use a local caching resolver (docs/dnsbl.md)")
			}
		}
	}
	return w
}
