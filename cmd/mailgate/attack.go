package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"mailgate/internal/api"
)

// cmdAttack shows "under attack" (mailgate attack [--json]) or, with end,
// ends it (mailgate attack end).
func cmdAttack(end bool) func(context.Context, *flag.FlagSet, []string, io.Writer) error {
	return func(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
		return attack(ctx, fs, args, stdout, end)
	}
}

func attack(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer, end bool) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: attack: unexpected argument %q (want nothing, or end)", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var a api.AttackJSON
	if end {
		a, err = c.EndAttack(ctx)
	} else {
		a, err = c.Attack(ctx)
	}
	if err != nil {
		return fmt.Errorf("attack: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, a)
	}
	switch {
	case end && a.Ended:
		fmt.Fprintln(stdout, "under attack: ended by hand; it stays off for bruteforce.under_attack_hold")
	case end:
		fmt.Fprintln(stdout, "under attack: was not on; it stays off for bruteforce.under_attack_hold")
	case !a.Enabled:
		fmt.Fprintln(stdout, "under attack: off (bruteforce.under_attack = false)")
	case a.On:
		fmt.Fprintf(stdout, "under attack: ON since %s: logins from new places are refused (mailgate attack end lifts it)\n", a.Since.Format(time.RFC3339))
	default:
		fmt.Fprintln(stdout, "under attack: not now")
	}
	fmt.Fprintf(stdout, "failed logins across the server: %d in the last 10 minutes; usual %.1f; %d would mean an attack\n",
		a.Failures, a.Usual, a.Threshold)
	return nil
}

// cmdStatus prints what the running daemon is and what its brute-force
// tracker holds.
func cmdStatus(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: status: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	s, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, s)
	}
	fmt.Fprintf(stdout, "mailgate %s, up since %s (%s)\n", s.Version, s.Started.Format(time.RFC3339), time.Duration(s.UptimeSeconds)*time.Second)
	if err := printStatusMore(stdout, &s); err != nil {
		return err
	}
	printDNSBLStatus(stdout, s.DNSBL)
	printRuleSync(stdout, s.RuleSync)
	bf := s.BruteForce
	if bf == nil {
		return nil
	}
	fmt.Fprintf(stdout, "brute force: %d address bans, %d login bans; tracking %d addresses, %d logins, %d login/address pairs, %d known-good, %d stale clients\n",
		bf.AddrBans, bf.LoginBans, bf.Addresses, bf.Logins, bf.Pairs, bf.KnownGood, bf.Stale)
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  RULE\tBANS AFTER\tWITHIN\tFOR")
	for _, w := range bf.Rules {
		fmt.Fprintf(tw, "  %s\t%d %s\t%s\t%s\n", w.Rule, w.Failures, w.Counts, w.Window, w.Ban)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	a := bf.UnderAttack
	switch {
	case !a.Enabled:
		fmt.Fprintf(stdout, "under attack: off (bruteforce.under_attack = false); %d failed logins in the last 10 minutes, usual %.1f\n", a.Failures, a.Usual)
	case a.On:
		fmt.Fprintf(stdout, "under attack: ON since %s (%d failed logins in the last 10 minutes, usual %.1f); mailgate attack end lifts it\n", a.Since.Format(time.RFC3339), a.Failures, a.Usual)
	default:
		fmt.Fprintf(stdout, "under attack: not now (%d failed logins in the last 10 minutes, usual %.1f, %d would mean an attack)\n", a.Failures, a.Usual, a.Threshold)
	}
	return nil
}

// printStatusMore prints the doors, permits, firewall, GeoIP database and
// last errors of a status.
func printStatusMore(w io.Writer, s *api.StatusJSON) error {
	if len(s.Doors) > 0 {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  LISTENER\tADDRESS\tUP\tREQUESTS 1m\tREFUSED 1m\tREQUESTS 1h\tREFUSED 1h")
		for _, d := range s.Doors {
			up := "yes"
			if !d.Up {
				up = "NO"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\n", d.Listener, d.Listen, up, d.MinuteRequests, d.MinuteRefusals, d.HourRequests, d.HourRefusals)
		}
		fmt.Fprintln(w, "doors (requests and refusals count per door, shared by its listeners):")
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(s.Logs) > 0 {
		fmt.Fprintln(w, "log door:")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tSTATE\tLINES\tEVENTS\tSKIPPED\tLONG\tLAG BYTES\tLAST LINE")
		for _, l := range s.Logs {
			last := "never"
			if !l.LastLine.IsZero() {
				last = (time.Duration(l.LastLineSeconds) * time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", l.Source, l.State, l.Lines, l.Events, l.Skipped+l.Stale, l.LongLines, l.LagBytes, last)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, l := range s.Logs {
			if l.Problem != "" {
				fmt.Fprintf(w, "  %s: %s\n", l.Source, l.Problem)
			}
		}
	}
	if s.Permits != nil {
		fmt.Fprintf(w, "relay permits: %d\n", *s.Permits)
	}
	if err := printClusterStatus(w, s.Cluster); err != nil {
		return err
	}
	if d := s.DNSBLServer; d != nil {
		a := d.Answers
		fmt.Fprintf(w, "dnsbl server: zone %s on %s; %d queries: %d listed, %d not listed, %d refused, %d rate limited",
			strings.TrimSuffix(d.Zone, "."), d.Listen, d.Queries, a["listed"], a["not_listed"], a["refused"], a["rate_limited"])
		if d.Autobans != nil {
			fmt.Fprintf(w, "; %d kernel autobans listed", *d.Autobans)
		}
		fmt.Fprintln(w)
	}
	if f := s.Firewall; f != nil {
		switch {
		case f.Error != "":
			fmt.Fprintf(w, "firewall: %s mode; the kernel's ruleset cannot be read: %s\n", f.Mode, f.Error)
		case f.InSync:
			fmt.Fprintf(w, "firewall: %s mode; the kernel matches\n", f.Mode)
		default:
			fmt.Fprintf(w, "firewall: %s mode; the kernel differs in %d lines (mailgate firewall show)\n", f.Mode, f.DriftLines)
		}
	}
	if g := s.GeoIP; g != nil {
		fmt.Fprintf(w, "geoip: %s (%s), built %s, loaded %s\n", g.Path, g.Type, g.Built.Format(time.DateOnly), g.Loaded.Format(time.RFC3339))
	}
	if len(s.Errors) == 0 {
		fmt.Fprintln(w, "errors: none since the start")
	} else {
		fmt.Fprintf(w, "last %d errors:\n", len(s.Errors))
		for _, e := range s.Errors {
			fmt.Fprintf(w, "  %s %s\n", e.Time.Format(time.RFC3339), e.Message)
		}
	}
	return nil
}

// printRuleSync prints the rule sync's line of status (PostgreSQL only).
func printRuleSync(w io.Writer, r *api.RuleSyncJSON) {
	if r == nil {
		return
	}
	since := time.Duration(r.SinceSeconds) * time.Second
	last := "none yet"
	if !r.LastNotice.IsZero() {
		last = fmt.Sprintf("last %s, lag %dms", r.LastNotice.Format(time.RFC3339), r.LagMS)
	}
	if r.Connected {
		fmt.Fprintf(w, "rule sync: connected to %s for %s; %d changes from other nodes (%s); %d full reloads\n",
			r.Store, since, r.Notices, last, r.Resyncs)
		return
	}
	fmt.Fprintf(w, "rule sync: DISCONNECTED from %s for %s (%s): decisions go on from memory, rule changes are refused until it is back; %d changes from other nodes (%s); %d full reloads\n",
		r.Store, since, r.LastError, r.Notices, last, r.Resyncs)
}
