package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"mailgate/internal/api"
	"mailgate/internal/rules"
)

func cmdPermitList(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: permit list: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ps, err := c.Permits(ctx)
	if err != nil {
		return fmt.Errorf("permit list: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, ps)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tACCOUNT\tSERVICE\tLEFT\tLOGINS\tSHARED\tDOOR/BY\tCOMMENT")
	for i := range ps {
		p := &ps[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.IP, dash(p.Account), dash(p.Service),
			p.Remaining, p.Logins, sharedText(p), doorText(p), p.Comment)
	}
	return tw.Flush()
}

// sharedText is "no", or "yes: " and the accounts seen from the network.
func sharedText(p *api.PermitJSON) string {
	if !p.Shared {
		return "no"
	}
	if len(p.Accounts) == 0 {
		return "yes"
	}
	return "yes: " + strings.Join(p.Accounts, ", ")
}

// doorText is where the login was seen, or who granted a manual permit.
func doorText(p *api.PermitJSON) string {
	if p.Door == "manual" && p.CreatedBy != "" {
		return "manual by " + p.CreatedBy
	}
	return dash(p.Door)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdPermitAdd(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	ip := fs.String("ip", "", "the address allowed to relay (or an IPv6 network as 'permit list' shows it)")
	dur := fs.String("for", "", "how long (90m, 12h, 7d, 2w; at most 365d); default 30m")
	comment := fs.String("comment", "", "why")
	jsonOut := fs.Bool("json", false, "print the permit as JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: permit add: unexpected argument %q", errUsage, pos[0])
	}
	if err := checkPermitIP("permit add", *ip); err != nil {
		return err
	}
	if _, err := api.ParsePermitFor(*dur); err != nil {
		return fmt.Errorf("%w: permit add: --for: %v", errUsage, err)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	p, err := c.AddPermit(ctx, api.PermitRequest{IP: *ip, For: *dur, Comment: *comment})
	if err != nil {
		return fmt.Errorf("permit add: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, p)
	}
	fmt.Fprintf(stdout, "added relay permit: %s\n", describePermit(&p))
	return nil
}

func cmdPermitRemove(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	ip := fs.String("ip", "", "withdraw the permit covering this address")
	jsonOut := fs.Bool("json", false, "print the withdrawn permit as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && *ip == "" {
		*ip = pos[0] // permit rm ADDR
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: permit rm: unexpected argument %q", errUsage, pos[0])
	}
	if err := checkPermitIP("permit rm", *ip); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	p, err := c.RemovePermit(ctx, *ip)
	if err != nil {
		return fmt.Errorf("permit rm: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, p)
	}
	fmt.Fprintf(stdout, "withdrew relay permit: %s\n", describePermit(&p))
	return nil
}

func checkPermitIP(cmd, ip string) error {
	if ip == "" {
		return fmt.Errorf("%w: %s: --ip is required", errUsage, cmd)
	}
	if p, err := rules.ParseMatch(ip); err != nil {
		return fmt.Errorf("%w: %s: --ip: %v", errUsage, cmd, err)
	} else if !p.IsValid() {
		return fmt.Errorf("%w: %s: --ip: none is not an address", errUsage, cmd)
	}
	return nil
}

func describePermit(p *api.PermitJSON) string {
	var b strings.Builder
	b.WriteString(p.IP)
	if p.Account != "" {
		fmt.Fprintf(&b, " (login %s over %s via %s)", p.Account, p.Service, p.Door)
	} else {
		b.WriteString(" (" + doorText(p) + ")")
	}
	b.WriteString(", " + p.Remaining + " left")
	if p.Comment != "" {
		b.WriteString(": " + p.Comment)
	}
	return b.String()
}
