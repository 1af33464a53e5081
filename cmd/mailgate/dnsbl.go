package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/dnsbl"
	"mailgate/internal/metrics"
	"mailgate/internal/policy"
)

// dnsblService is the daemon's DNS blocklist client: the gate the doors
// call before deciding, and the zone health check at start, every
// dnsbl.HealthEvery and after a reload that changes the zones.
type dnsblService struct {
	gate   *dnsbl.Gate
	engine *policy.Engine
	log    *slog.Logger
	kick   chan struct{}
	// failed is told about a zone failing its health check (nil: no one).
	failed func(zone, problem string, now time.Time)

	mu sync.Mutex // serializes reconfigure
}

// newDNSBL builds the service; with no zones the gate is off until a
// reload adds some.
func newDNSBL(cfg config.DNSBL, engine *policy.Engine, log *slog.Logger) (*dnsblService, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &dnsblService{engine: engine, log: log, kick: make(chan struct{}, 1)}
	c, err := d.checker(cfg, nil)
	if err != nil {
		return nil, err
	}
	d.gate = dnsbl.NewGate(engine, c)
	engine.SetDNSBL(cfg.Policy())
	return d, nil
}

// checker returns the checker for cfg: old reconfigured, or a new one;
// nil when cfg has no zones. old is not changed when it fails.
func (d *dnsblService) checker(cfg config.DNSBL, old *dnsbl.Checker) (*dnsbl.Checker, error) {
	cc, on, err := cfg.Checker()
	if err != nil || !on {
		return nil, err
	}
	if old != nil {
		return old, old.Reconfigure(cc)
	}
	c, err := dnsbl.New(cc, nil, d.log)
	if err != nil {
		return nil, fmt.Errorf("dnsbl: %w", err)
	}
	return c, nil
}

// check reports whether reconfigure would fail for cfg (the resolver of
// /etc/resolv.conf cannot be read), changing nothing.
func (d *dnsblService) check(cfg config.DNSBL) error {
	cc, on, err := cfg.Checker()
	if err != nil || !on {
		return err
	}
	if _, err := dnsbl.New(cc, nil, d.log); err != nil {
		return fmt.Errorf("dnsbl: %w", err)
	}
	return nil
}

// reconfigure applies a reloaded [dnsbl]; on an error nothing changes.
func (d *dnsblService) reconfigure(cfg config.DNSBL) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.gate.Checker()
	if err := d.check(cfg); err != nil {
		return err
	}
	c, err := d.checker(cfg, old)
	if err != nil {
		return err
	}
	d.gate.Set(c)
	d.engine.SetDNSBL(cfg.Policy())
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

// run checks the zones' health at start, every dnsbl.HealthEvery and
// after a reload, until ctx ends.
func (d *dnsblService) run(ctx context.Context) {
	t := time.NewTicker(dnsbl.HealthEvery)
	defer t.Stop()
	for {
		if c := d.gate.Checker(); c != nil {
			for _, h := range c.CheckHealth(ctx, time.Now()) {
				if h.OK {
					d.log.Info("dnsbl: zone works", "zone", h.Zone)
				} else if ctx.Err() == nil {
					d.log.Warn("dnsbl: zone health check failed; its answers may be wrong", "zone", h.Zone, "problem", h.Problem)
					if d.failed != nil {
						d.failed(h.Zone, h.Problem, h.At)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

// explain is the admin API's DNSBLFunc.
func (d *dnsblService) explain(ctx context.Context, a *policy.Attempt, now time.Time) *api.DNSBLJSON {
	c := d.gate.Checker()
	if c == nil {
		return nil
	}
	out := &api.DNSBLJSON{IP: a.Client.String(), Threshold: d.engine.Settings().DNSBL.Threshold, Listed: []string{}, Zones: []api.DNSBLZoneJSON{}}
	if why := d.engine.DNSBLSkip(a, now); why != "" {
		out.Note = "not looked up: " + why
		return out
	}
	out.Asked = true
	r := c.Lookup(ctx, a.Client, now)
	a.DNSBL = policy.DNSBL{Checked: r.OK, Score: r.Score, Zones: r.Listed}
	fillDNSBL(out, r)
	return out
}

func fillDNSBL(out *api.DNSBLJSON, r dnsbl.Result) {
	out.Answered, out.Score = r.OK, r.Score
	if r.Listed != "" {
		out.Listed = strings.Split(r.Listed, ",")
	}
	for _, a := range r.Answers {
		z := api.DNSBLZoneJSON{Zone: a.Zone, Weight: a.Weight, Result: a.Status.String(), TTL: a.TTLSec, Error: a.Err}
		for _, c := range a.Codes {
			z.Codes = append(z.Codes, c.String())
		}
		out.Zones = append(out.Zones, z)
	}
}

// status fills in GET /v1/status's dnsbl part.
func (d *dnsblService) status(out *api.StatusJSON) {
	c := d.gate.Checker()
	if c == nil {
		return
	}
	st := c.Stats()
	s := &api.DNSBLStatusJSON{Resolver: c.Server(), Zones: []api.DNSBLHealthJSON{}, CacheEntries: c.CacheLen(),
		CacheHits: st.CacheHits.Load(), CacheMisses: st.CacheMisses.Load(), Queries: st.Queries.Load(),
		Errors: st.Failed.Load(), Refused: st.Refused.Load()}
	health := map[string]dnsbl.ZoneHealth{}
	for _, h := range c.Health() {
		health[h.Zone] = h
	}
	for _, z := range c.Zones() {
		j := api.DNSBLHealthJSON{Zone: z.Name, Spec: z.String(), Problem: "not checked yet"}
		if h, ok := health[z.Name]; ok {
			j.OK, j.Problem, j.Checked = h.OK, h.Problem, h.At.UTC()
		}
		s.Zones = append(s.Zones, j)
	}
	out.DNSBL = s
}

// writeMetrics writes the mailgate_dnsbl_* series (docs/metrics.md).
func (d *dnsblService) writeMetrics(w io.Writer) {
	c := d.gate.Checker()
	if c == nil {
		return
	}
	st := c.Stats()
	metrics.WriteCounter(w, `mailgate_dnsbl_lookups_total{result="cache_hit"}`, st.CacheHits.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_lookups_total{result="cache_miss"}`, st.CacheMisses.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_lookups_total{result="shared"}`, st.Shared.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_queries_total`, st.Queries.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_answers_total{result="listed"}`, st.Listed.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_answers_total{result="error"}`, st.Failed.Load())
	metrics.WriteCounter(w, `mailgate_dnsbl_refused_total`, st.Refused.Load())
	metrics.WriteGauge(w, `mailgate_dnsbl_cache_entries`, float64(c.CacheLen()))
	health := map[string]bool{}
	for _, h := range c.Health() {
		health[h.Zone] = h.OK
	}
	for _, z := range c.Zones() {
		ok, checked := health[z.Name]
		v := 0.0
		switch {
		case !checked:
			continue
		case ok:
			v = 1
		}
		metrics.WriteGauge(w, `mailgate_dnsbl_zone_up{zone="`+z.Name+`"}`, v)
	}
}

// cmdDNSBLCheck asks every zone of the config file about an address now,
// without the daemon's cache, and prints the answers and the score.
func cmdDNSBLCheck(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cfgPath := fs.String("config", "", "the config `FILE` (default "+config.DefaultPath+")")
	jsonOut := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: dnsbl check: want one IP address", errUsage)
	}
	ip, err := netip.ParseAddr(pos[0])
	if err != nil {
		return fmt.Errorf("%w: dnsbl check: %q is not an IP address", errUsage, pos[0])
	}
	ip = ip.Unmap()
	cfg, used, err := config.LoadOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	cc, on, err := cfg.DNSBL.Checker()
	if err != nil {
		return err
	}
	if !on {
		if used == "" {
			used = "the built-in defaults"
		}
		return errors.New("dnsbl check: no zones configured ([dnsbl] zones, in " + used + ")")
	}
	c, err := dnsbl.New(cc, nil, nil)
	if err != nil {
		return fmt.Errorf("dnsbl check: %w", err)
	}
	r := c.Check(ctx, ip, time.Now())
	out := api.DNSBLJSON{IP: ip.String(), Asked: true, Threshold: cfg.DNSBL.Threshold, Listed: []string{}, Zones: []api.DNSBLZoneJSON{}}
	fillDNSBL(&out, r)
	if *jsonOut {
		return printJSON(stdout, out)
	}
	verdict := "below the threshold: logins are let in"
	if r.Score >= cfg.DNSBL.Threshold {
		verdict = "at or above the threshold: logins are refused"
	}
	fmt.Fprintf(stdout, "%s through %s: score %d, threshold %d (%s)\n", ip, c.Server(), r.Score, cfg.DNSBL.Threshold, verdict)
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  ZONE\tWEIGHT\tRESULT\tANSWER\tTTL\tERROR")
	for _, z := range out.Zones {
		ttl := "-"
		if z.TTL > 0 {
			ttl = (time.Duration(z.TTL) * time.Second).String()
		}
		codes := strings.Join(z.Codes, ",")
		if codes == "" {
			codes = "-"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", z.Zone, z.Weight, z.Result, codes, ttl, z.Error)
	}
	return tw.Flush()
}

// printDNSBL prints a DNSBL answer under explain's verdict.
func printDNSBL(w io.Writer, d *api.DNSBLJSON) error {
	if d == nil {
		return nil
	}
	if !d.Asked {
		fmt.Fprintf(w, "dnsbl: %s\n", d.Note)
		return nil
	}
	if !d.Answered {
		fmt.Fprintf(w, "dnsbl: no answer within the budget (counted as not listed)\n")
	}
	fmt.Fprintf(w, "dnsbl: score %d, threshold %d\n", d.Score, d.Threshold)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, z := range d.Zones {
		fmt.Fprintf(tw, "  %s\t*%d\t%s\t%s\t%s\n", z.Zone, z.Weight, z.Result, strings.Join(z.Codes, ","), z.Error)
	}
	return tw.Flush()
}

// printDNSBLStatus prints status's dnsbl part.
func printDNSBLStatus(w io.Writer, s *api.DNSBLStatusJSON) {
	if s == nil {
		return
	}
	fmt.Fprintf(w, "dnsbl: resolver %s, %d addresses cached, %d cache hits, %d misses, %d queries, %d errors (%d refused by the list)\n",
		s.Resolver, s.CacheEntries, s.CacheHits, s.CacheMisses, s.Queries, s.Errors, s.Refused)
	for _, z := range s.Zones {
		switch {
		case z.Checked.IsZero():
			fmt.Fprintf(w, "  %s: not checked yet\n", z.Spec)
		case z.OK:
			fmt.Fprintf(w, "  %s: works (checked %s)\n", z.Spec, z.Checked.Format(time.RFC3339))
		default:
			fmt.Fprintf(w, "  %s: FAILING (checked %s): %s\n", z.Spec, z.Checked.Format(time.RFC3339), z.Problem)
		}
	}
}
