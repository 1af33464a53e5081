package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// cmdFirewallShow prints the ruleset the daemon wants in table inet
// mailgate, in nft syntax, and how the kernel's differs.
func cmdFirewallShow(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: firewall show: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	fw, err := c.Firewall(ctx)
	if err != nil {
		return fmt.Errorf("firewall show: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, fw)
	}
	fmt.Fprintf(stdout, "# mode %s: the ruleset mailgate wants\n%s", fw.Mode, fw.Want)
	switch {
	case fw.Have == "":
		fmt.Fprintln(stdout, "\n# the kernel has no table inet mailgate: run 'mailgate firewall apply'")
	case fw.Diff == "":
		fmt.Fprintln(stdout, "\n# the kernel has exactly this")
	default:
		fmt.Fprintf(stdout, "\n# the kernel differs (+ missing there, - there but not wanted):\n%s", fw.Diff)
	}
	return nil
}

// cmdFirewallApply has the daemon write its ruleset and re-assert its sets.
func cmdFirewallApply(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: firewall apply: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.ApplyFirewall(ctx)
	if err != nil {
		return fmt.Errorf("firewall apply: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "applied table inet mailgate: %d set elements added, %d removed\n", res.Added, res.Removed)
	return nil
}
