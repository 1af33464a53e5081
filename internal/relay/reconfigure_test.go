package relay

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"mailgate/internal/rules"
)

// Reconfigure keeps the permits held and applies the new TTL, services
// and never networks to later logins.
func TestReconfigure(t *testing.T) {
	tab := New(DefaultConfig())
	a := addr("203.0.113.9")
	g, o := tab.Login("alice", rules.IMAP, "dovecot", a, at(0))
	if o != Granted {
		t.Fatal(o)
	}
	c := DefaultConfig()
	c.TTL = time.Hour
	c.Services = []rules.Service{rules.POP3}
	c.Never = append(c.Never, prefix("198.51.100.0/24"))
	if err := tab.Reconfigure(c); err != nil {
		t.Fatal(err)
	}
	if p, ok := tab.Check(a, at(time.Minute)); !ok || p != g {
		t.Errorf("the permit did not survive: %+v %v", p, ok)
	}
	if _, o := tab.Login("bob", rules.IMAP, "dovecot", addr("203.0.113.10"), at(time.Minute)); o != NotGranting {
		t.Errorf("IMAP after services = [pop3]: %s", o)
	}
	if p, o := tab.Login("bob", rules.POP3, "dovecot", addr("203.0.113.10"), at(time.Minute)); o != Granted || !p.Expires.Equal(at(61*time.Minute)) {
		t.Errorf("POP3 with ttl 1h: %s %+v", o, p)
	}
	if _, o := tab.Login("bob", rules.POP3, "dovecot", addr("198.51.100.7"), at(time.Minute)); o != NeverNetwork {
		t.Errorf("a new never network: %s", o)
	}
}

func TestReconfigureNeedsRestart(t *testing.T) {
	tab := New(DefaultConfig())
	for _, mod := range []func(*Config){
		func(c *Config) { c.IPv6Prefix = 128 },
		func(c *Config) { c.MaxPermits = 10 },
	} {
		c := DefaultConfig()
		mod(&c)
		c.TTL = time.Hour
		if err := tab.Reconfigure(c); !errors.Is(err, ErrNeedsRestart) {
			t.Errorf("got %v", err)
		}
	}
	if tab.s().cfg.TTL != DefaultConfig().TTL {
		t.Error("a refused Reconfigure changed the TTL")
	}
	c := DefaultConfig()
	c.TTL = 0
	if err := tab.Reconfigure(c); err == nil {
		t.Error("an invalid config was taken")
	}
}

func TestReconfigureRace(t *testing.T) {
	tab := New(DefaultConfig())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			tab.Login("alice", rules.IMAP, "dovecot", a, at(time.Duration(i)*time.Second))
			tab.Check(a, at(time.Duration(i)*time.Second))
		}
	})
	for i := range 100 {
		c := DefaultConfig()
		c.TTL = time.Duration(i+1) * time.Minute
		tab.Reconfigure(c)
	}
	wg.Wait()
}
