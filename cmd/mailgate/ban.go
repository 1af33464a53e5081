package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/rules"
)

func cmdBanList(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: ban list: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	bans, err := c.Bans(ctx)
	if err != nil {
		return fmt.Errorf("ban list: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, bans)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tBANNED\tREASON\tLEFT\tBY\tCOMMENT")
	for _, b := range bans {
		what := b.IP
		if b.Kind == "login" {
			what = "login " + b.Account
		}
		left := "until lifted"
		if b.Remaining != "" {
			left = b.Remaining
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.ID, what, b.Reason, left, b.CreatedBy, b.Comment)
	}
	return tw.Flush()
}

func cmdBanAdd(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	ip := fs.String("ip", "", "an address or CIDR network to ban")
	account := fs.String("account", "", "a login to ban")
	dur := fs.String("for", "", "how long: a duration (90m, 12h, 7d, 2w), a date (2026-12-31, through that day, UTC) or an RFC 3339 time; default: until lifted with 'ban rm'")
	comment := fs.String("comment", "", "why")
	jsonOut := fs.Bool("json", false, "print the ban as JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: ban add: unexpected argument %q", errUsage, pos[0])
	}
	req := api.BanRequest{IP: *ip, Account: *account, Comment: *comment}
	switch {
	case (*ip == "") == (*account == ""):
		return fmt.Errorf("%w: ban add: give --ip or --account (one of them)", errUsage)
	case *ip != "":
		if p, err := rules.ParseMatch(*ip); err != nil {
			return fmt.Errorf("%w: ban add: --ip: %v", errUsage, err)
		} else if !p.IsValid() {
			return fmt.Errorf("%w: ban add: --ip: none is not an address or CIDR network", errUsage)
		}
	default:
		if a, err := rules.NormalizeAccount(*account); err != nil || a == "*" || a[0] == '@' {
			return fmt.Errorf("%w: ban add: --account: %q is not a login", errUsage, *account)
		}
	}
	if *dur != "" {
		now := time.Now()
		until, err := parseExpiry(*dur, now)
		if err != nil {
			return fmt.Errorf("%w: ban add: --for: %v", errUsage, err)
		}
		req.For = until.Sub(now).Round(time.Second).String()
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	b, err := c.AddBan(ctx, req)
	if err != nil {
		return fmt.Errorf("ban add: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, b)
	}
	fmt.Fprintf(stdout, "added ban %d: %s\n", b.ID, describeBan(&b))
	return nil
}

func cmdBanRemove(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	ip := fs.String("ip", "", "lift every ban containing this address (or equal to this network)")
	account := fs.String("account", "", "lift the bans of this login")
	jsonOut := fs.Bool("json", false, "print the lifted bans as a JSON array")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	given := len(pos)
	if *ip != "" {
		given++
	}
	if *account != "" {
		given++
	}
	if given != 1 {
		return fmt.Errorf("%w: ban rm: give one ban id, or --ip, or --account", errUsage)
	}
	var id int64
	if len(pos) == 1 {
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id <= 0 {
			return fmt.Errorf("%w: ban rm: %q is not a ban id (see 'mailgate ban list')", errUsage, pos[0])
		}
	}
	if *ip != "" {
		if p, err := rules.ParseMatch(*ip); err != nil {
			return fmt.Errorf("%w: ban rm: --ip: %v", errUsage, err)
		} else if !p.IsValid() {
			return fmt.Errorf("%w: ban rm: --ip: none is not an address or CIDR network", errUsage)
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var gone []api.BanJSON
	if id != 0 {
		gone, err = c.RemoveBan(ctx, id)
	} else {
		gone, err = c.RemoveBansFor(ctx, *ip, *account)
	}
	if err != nil {
		return fmt.Errorf("ban rm: %w", err)
	}
	if *jsonOut {
		if gone == nil {
			gone = []api.BanJSON{}
		}
		return printJSON(stdout, gone)
	}
	for i := range gone {
		fmt.Fprintf(stdout, "lifted ban %d: %s\n", gone[i].ID, describeBan(&gone[i]))
	}
	return nil
}

func describeBan(b *api.BanJSON) string {
	s := b.IP
	if b.Kind == "login" {
		s = "login " + b.Account
	}
	s += " (" + b.Reason + ")"
	if b.Remaining != "" {
		s += ", " + b.Remaining + " left"
	}
	if b.Comment != "" {
		s += ": " + b.Comment
	}
	return s
}
