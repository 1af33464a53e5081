// Command mailgate decides, for every mail login and relay attempt,
// whether it may proceed. `mailgate serve` runs the daemon; the other
// subcommands manage it through its admin API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is mailgate's release; "-dev" builds are from a checkout.
const version = "0.1.0-dev"

const usage = `mailgate decides whether mail logins and relay attempts may proceed.

Usage:
  mailgate serve [--config FILE]                  run the daemon
  mailgate config check [--config FILE]           check a config file
  mailgate rule add --account A|--global --allow|--deny|--extra
                    --ip IP|CIDR|none | --country CC[,CC]
                    [--service S] [--comment T] [--expires D]
  mailgate rule list [--account A] [--json]
  mailgate rule rm ID
  mailgate explain --account A --ip IP --service S [--pwhash H] [--json]
  mailgate ban list [--json]
  mailgate ban add (--ip IP|CIDR | --account A) [--for D] [--comment T]
  mailgate ban rm (ID | --ip IP | --account A)
  mailgate permit list [--json]                   relay permits (POP/IMAP-before-SMTP)
  mailgate permit add --ip IP [--for D] [--comment T]
  mailgate permit rm --ip IP
  mailgate limit list [--over] [--json]           senders' usage against sending limits
  mailgate firewall show [--json]                 the nftables ruleset mailgate wants, and the kernel's difference
  mailgate firewall apply [--json]                write it now (the daemon does at start and every reconcile_every)
  mailgate hook postlogin [--socket PATH] [--timeout D] PROTOCOL CONTINUATION...
                          Dovecot post-login script: reports the login to the hook socket
                          (default /run/mailgate/hook.sock), then runs CONTINUATION
  mailgate status [--json]                        version, uptime, bans, the brute-force rules and windows
  mailgate attack [--json]                        is the server "under attack" (bruteforce.under_attack)?
  mailgate attack end                             end it now (logins from new places are let in again)
  mailgate reload [--json]                        re-read the daemon's config file and apply it (also SIGHUP)
  mailgate audit [--limit N] [--json]             who changed which rule
  mailgate import ispconfig (--csv F | --sql F | --mysql DSN) [--dry-run]
  mailgate import user-allowed --file F [--dry-run]   login|CC, login|IP lines
  mailgate version

Every command takes --config FILE (default ` + "/etc/mailgate/mailgate.toml" + `, or built-in
defaults when that file does not exist); client commands also take --socket PATH.
Services: imap, pop3, smtp (also covers submission), submission, sieve, all.
`

// errUsage marks errors in the command line: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "mailgate: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "mailgate: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub = rest[0]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "mailgate", version)
		return nil
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	case "config":
		if sub == "check" {
			return cmdConfigCheck(rest[1:], stdout)
		}
	case "rule":
		switch sub {
		case "add":
			return cmdRuleAdd(ctx, rest[1:], stdout)
		case "list", "ls":
			return cmdRuleList(ctx, rest[1:], stdout)
		case "rm", "remove", "del":
			return cmdRuleRemove(ctx, rest[1:], stdout)
		}
	case "ban":
		switch sub {
		case "list", "ls":
			return cmdBanList(ctx, rest[1:], stdout)
		case "add":
			return cmdBanAdd(ctx, rest[1:], stdout)
		case "rm", "remove", "del":
			return cmdBanRemove(ctx, rest[1:], stdout)
		}
	case "permit":
		switch sub {
		case "list", "ls":
			return cmdPermitList(ctx, rest[1:], stdout)
		case "add":
			return cmdPermitAdd(ctx, rest[1:], stdout)
		case "rm", "remove", "del":
			return cmdPermitRemove(ctx, rest[1:], stdout)
		}
	case "firewall":
		switch sub {
		case "show":
			return cmdFirewallShow(ctx, rest[1:], stdout)
		case "apply":
			return cmdFirewallApply(ctx, rest[1:], stdout)
		}
	case "limit", "limits":
		switch sub {
		case "list", "ls":
			return cmdLimitList(ctx, rest[1:], stdout)
		}
	case "hook":
		if sub == "postlogin" {
			// Never stdout: it is the mail client's connection.
			return cmdHookPostlogin(ctx, rest[1:], stderr, osHookProcess())
		}
	case "attack":
		return cmdAttack(ctx, rest, stdout)
	case "status":
		return cmdStatus(ctx, rest, stdout)
	case "reload":
		return cmdReload(ctx, rest, stdout)
	case "explain":
		return cmdExplain(ctx, rest, stdout)
	case "audit":
		return cmdAudit(ctx, rest, stdout)
	case "import":
		switch sub {
		case "ispconfig":
			return cmdImportISPConfig(ctx, rest[1:], stdout)
		case "user-allowed":
			return cmdImportUserAllowed(ctx, rest[1:], stdout)
		}
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	fmt.Fprint(stderr, usage)
	if sub == "" {
		return fmt.Errorf("%w: %s needs a subcommand", errUsage, cmd)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd+" "+sub)
}

// parseFlags parses flags that may stand before, between or after
// positional arguments, and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stderr)
				fs.Usage()
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
