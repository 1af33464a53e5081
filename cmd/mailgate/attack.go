package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"mailgate/internal/api"
)

// cmdAttack shows "under attack" (mailgate attack [--json]) or ends it
// (mailgate attack end).
func cmdAttack(ctx context.Context, args []string, stdout io.Writer) error {
	end := len(args) > 0 && args[0] == "end"
	if end {
		args = args[1:]
	}
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: attack: unexpected argument %q (want nothing or end)", errUsage, pos[0])
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
