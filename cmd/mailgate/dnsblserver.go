package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/dnsbld"
	"mailgate/internal/nft"
)

// autobanPoll is how often the kernel's autobans are read for the DNSBL
// server: an address the kernel bans is listed within this time.
const autobanPoll = 5 * time.Second

// autobanReader reads the kernel's autoban sets (*nft.Firewall).
type autobanReader interface {
	Autobans(now time.Time) ([]nft.Ban, error)
}

// dnsblServer is the [dnsbl_server] listener: the tracker's address bans
// and, when the firewall runs, the kernel's autobans, as a DNSBL zone.
type dnsblServer struct {
	h    *dnsbld.Handler
	srv  *dnsbld.Server
	auto *dnsbld.Table // nil: no firewall
	fw   autobanReader
	log  *slog.Logger

	autoErr atomic.Bool // the last read of the autobans failed (logged once)
}

// newDNSBLServer binds [dnsbl_server] listen. fw may be nil (no firewall).
func newDNSBLServer(c config.DNSBLServer, tracker *abuse.Tracker, fw autobanReader, count func(dnsbld.Outcome), log *slog.Logger) (*dnsblServer, error) {
	hc, err := c.Server()
	if err != nil {
		return nil, err
	}
	d := &dnsblServer{fw: fw, log: log}
	lookup := dnsbld.Lookups{dnsbld.Bans{T: tracker}}
	if fw != nil {
		d.auto = new(dnsbld.Table)
		lookup = append(lookup, d.auto)
	}
	if d.h, err = dnsbld.NewHandler(hc, lookup, count); err != nil {
		return nil, err
	}
	if d.srv, err = dnsbld.Listen(c.Listen, d.h); err != nil {
		return nil, err
	}
	return d, nil
}

// pollAutobans reads the kernel's autobans now and every autobanPoll
// until ctx ends.
func (d *dnsblServer) pollAutobans(ctx context.Context) {
	if d.fw == nil {
		return
	}
	t := time.NewTicker(autobanPoll)
	defer t.Stop()
	now := time.Now()
	for {
		d.readAutobans(now)
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
	}
}

func (d *dnsblServer) readAutobans(now time.Time) {
	bans, err := d.fw.Autobans(now)
	if err != nil {
		// The last table stays: its entries end by themselves.
		if !d.autoErr.Swap(true) {
			d.log.Warn("dnsbl server: reading the kernel's autobans failed; the last ones read stay listed until they end", "err", err)
		}
		return
	}
	if d.autoErr.Swap(false) {
		d.log.Info("dnsbl server: the kernel's autobans are read again")
	}
	ls := make([]dnsbld.Listing, 0, len(bans))
	for _, b := range bans {
		ls = append(ls, dnsbld.Listing{Prefix: b.Prefix, Source: dnsbld.Autoban, Expires: b.Expires})
	}
	d.auto.Replace(ls)
}

// reconfigure applies a reloaded [dnsbl_server] (all but listen).
func (d *dnsblServer) reconfigure(c config.DNSBLServer) error {
	hc, err := c.Server()
	if err != nil {
		return err
	}
	return d.h.SetConfig(hc)
}

// status is the listener's part of GET /v1/status.
func (d *dnsblServer) status() *api.DNSBLServerJSON {
	st := d.h.Stats()
	out := &api.DNSBLServerJSON{Listen: d.srv.Addr(), Zone: d.h.Zone(), Queries: st.Total(),
		Answers: map[string]uint64{}}
	for _, o := range dnsbld.Outcomes() {
		out.Answers[o.String()] = st.Get(o)
	}
	if d.auto != nil {
		n := d.auto.Len()
		out.Autobans = &n
	}
	return out
}
