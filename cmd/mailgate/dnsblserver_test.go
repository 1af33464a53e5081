package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/dnsbld"
	"mailgate/internal/nft"
)

type fakeAutobans struct {
	bans []nft.Ban
	err  error
}

func (f *fakeAutobans) Autobans(time.Time) ([]nft.Ban, error) { return f.bans, f.err }

// The kernel's autobans replace the table at each read; a failed read
// keeps the last one (its entries end by themselves) and is logged once.
func TestDNSBLServerAutobans(t *testing.T) {
	c := config.Default().DNSBLServer
	c.Listen = "127.0.0.1:0"
	fw := &fakeAutobans{}
	var logs bytes.Buffer
	d, err := newDNSBLServer(c, abuse.New(abuse.DefaultConfig()), fw, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.srv.Shutdown(t.Context()) })
	now := time.Date(2026, 12, 5, 19, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr("203.0.113.9")
	listed := func() bool { _, ok := d.auto.Listed(a, now); return ok }

	fw.bans = []nft.Ban{{Prefix: netip.PrefixFrom(a, 32), Expires: now.Add(time.Hour)}}
	d.readAutobans(now)
	if l, ok := d.auto.Listed(a, now); !ok || l.Source != dnsbld.Autoban {
		t.Fatalf("autoban not listed: %+v %v", l, ok)
	}
	fw.bans, fw.err = nil, errors.New("netlink: EPERM")
	d.readAutobans(now)
	d.readAutobans(now)
	if !listed() {
		t.Error("a failed read dropped the last autobans")
	}
	if n := strings.Count(logs.String(), "reading the kernel's autobans failed"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, logs.String())
	}
	fw.err = nil
	d.readAutobans(now)
	if listed() {
		t.Error("an autoban the kernel no longer holds is still listed")
	}
	if st := d.status(); st.Autobans == nil || *st.Autobans != 0 || st.Zone != "bans.mailgate.local." {
		t.Errorf("status %+v", st)
	}
}
