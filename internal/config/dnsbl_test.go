package config

import (
	"strings"
	"testing"
)

func TestDNSBLWarnings(t *testing.T) {
	c := Default()
	c.DNSBL.Zones = []string{"zen.spamhaus.org=127.0.0.[4..7]*3", "list.example*1"}
	c.DNSBL.Resolver = "127.0.0.1"
	if w := c.DNSBL.warnings(); len(w) != 0 {
		t.Errorf("a good [dnsbl] warns: %q", w)
	}
	c.DNSBL.Zones = []string{"list.example", "zen.spamhaus.org*3", "pbl.spamhaus.org=127.0.0.[10..11]"}
	c.DNSBL.Resolver = "8.8.8.8"
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"dnsbl.zones[1]: zen.spamhaus.org*3 counts 127.0.0.10", "dnsbl.zones[2]: pbl.spamhaus.org", "dnsbl.resolver: 8.8.8.8 is a public resolver"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}
