package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"mailgate/internal/api"
)

func cmdLimitList(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	over := fs.Bool("over", false, "only the accounts at a limit now")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: limit list: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	us, err := c.Limits(ctx)
	if err != nil {
		return fmt.Errorf("limit list: %w", err)
	}
	if *over {
		kept := us[:0]
		for _, u := range us {
			if len(u.Over) > 0 {
				kept = append(kept, u)
			}
		}
		us = kept
	}
	if *jsonOut {
		if us == nil {
			us = []api.UsageJSON{}
		}
		return printJSON(stdout, us)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGIN\tMSG/H\tMSG/D\tRCPT/H\tRCPT/D\tOVER\tREFUSED")
	for i := range us {
		u := &us[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", u.Login,
			usedOf(u.MessagesHour, u.Limits.MessagesPerHour), usedOf(u.MessagesDay, u.Limits.MessagesPerDay),
			usedOf(u.RecipientsHour, u.Limits.RecipientsPerHour), usedOf(u.RecipientsDay, u.Limits.RecipientsPerDay),
			dash(strings.Join(u.Over, ",")), u.Refused)
	}
	return tw.Flush()
}

// usedOf is "used/max", with "-" for no limit.
func usedOf(used, limit int) string {
	m := "-"
	if limit > 0 {
		m = strconv.Itoa(limit)
	}
	return strconv.Itoa(used) + "/" + m
}
