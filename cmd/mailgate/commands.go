package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"mailgate/internal/config"
)

// runFunc runs one command: it defines its flags on fs (created by run,
// named after the command), then parses args with parseFlags. It must do
// nothing before parsing: --help, the man page and the completion call it
// with "--help" to learn its flags.
type runFunc func(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error

// command is one row of the command table: the one source of --help, the
// man page and the bash completion.
type command struct {
	name     string   // one or two words: "status", "rule add"
	aliases  []string // other spellings of the whole name: "rule ls"
	synopsis string   // what follows the name; every flag but --config and --socket, with its placeholder
	short    string   // one line
	long     string   // more, for CMD --help and the man page (optional)
	hidden   bool     // not listed (help's own switches)
	run      runFunc
}

// commands is the command table. Adding a command is one row here; its
// function takes the FlagSet run gives it (see runFunc). The order is the
// order of --help and the man page.
func commands() []command {
	return []command{
		{name: "serve", synopsis: "", short: "run the daemon",
			long: "Runs the doors (Dovecot, nginx, Postfix) and the admin API until SIGTERM or SIGINT. SIGHUP reopens the decision log file, reloads the GeoIP database and re-reads the config file (as mailgate reload does).",
			run:  withStderr(cmdServe)},
		{name: "config check", synopsis: "[--connect]", short: "check a config file and print what Dovecot needs",
			long: "Loads and validates the config file (or the built-in defaults), prints every problem with its key path, where the Dovecot door's key file is, and the warnings serve would log. Creates nothing. With --connect it also connects to a PostgreSQL store and reports its schema version (the DSN is never printed).",
			run:  out(cmdConfigCheck)},
		{name: "rule add", synopsis: "(--account A | --global) (--allow | --deny | --extra) (--ip IP|CIDR|none | --country CC[,CC]) [--service S] [--comment T] [--expires D] [--json]",
			short: "add an account rule, a trusted network or a global deny entry",
			long:  "--expires takes a duration (90m, 12h, 7d, 2w), a date (2026-12-31: through that day, UTC) or an RFC 3339 time.",
			run:   out(cmdRuleAdd)},
		{name: "rule list", aliases: []string{"rule ls"}, synopsis: "[--account A] [--json]", short: "list the rules, stored and from the config file", run: out(cmdRuleList)},
		{name: "rule rm", aliases: []string{"rule remove", "rule del"}, synopsis: "[--json] ID...", short: "remove rules by id", run: out(cmdRuleRemove)},
		{name: "rule export", synopsis: "[--file F]", short: "every stored rule as JSON lines (rule import reads them back)", run: out(cmdRuleExport)},
		{name: "rule import", synopsis: "--file F|- [--dry-run] [--json]", short: "add the rules of an export, all or nothing; rules already present are skipped", run: out(cmdRuleImport)},
		{name: "explain", synopsis: "--account A --ip IP --service S [--pwhash H] [--json]", short: "the verdict on a login attempt, with every check in order",
			long: "Exits 0 when the attempt would be allowed, 3 when it would be refused (any other verdict), 1 when the daemon cannot be asked.",
			run:  out(cmdExplain)},
		{name: "dnsbl check", synopsis: "[--json] IP", short: "ask every DNSBL zone of the config file about an address now (no cache), with each answer and the score",
			long: "Runs in the CLI, not through the daemon: it reads [dnsbl] of the config file and asks its resolver. A zone answering 127.255.255.x refused the query (a public resolver, or over the list's free limit): see docs/dnsbl.md.",
			run:  out(cmdDNSBLCheck)},
		{name: "status", synopsis: "[--json]", short: "version, uptime, doors and their traffic, log sources, permits, firewall drift, GeoIP database, last errors, bans and the brute-force rules", long: "Requests and refusals per door count the last minute and hour since the start. A log source that is missing, lagging, stuck or restarting is named with its problem (docs/logs.md). GET /healthz and the Prometheus metrics are in docs/metrics.md.", run: out(cmdStatus)},
		{name: "ban list", aliases: []string{"ban ls"}, synopsis: "[--json]", short: "the active bans, automatic and manual", run: out(cmdBanList)},
		{name: "ban add", synopsis: "(--ip IP|CIDR | --account A) [--for D] [--comment T] [--json]", short: "ban an address, a network or a login", run: out(cmdBanAdd)},
		{name: "ban rm", aliases: []string{"ban remove", "ban del"}, synopsis: "(ID | --ip IP | --account A) [--json]", short: "lift bans", run: out(cmdBanRemove)},
		{name: "permit list", aliases: []string{"permit ls"}, synopsis: "[--json]", short: "relay permits (POP/IMAP-before-SMTP)", run: out(cmdPermitList)},
		{name: "permit add", synopsis: "--ip IP [--for D] [--comment T] [--json]", short: "let an address relay", run: out(cmdPermitAdd)},
		{name: "permit rm", aliases: []string{"permit remove", "permit del"}, synopsis: "(--ip IP | IP) [--json]", short: "withdraw a relay permit", run: out(cmdPermitRemove)},
		{name: "limit list", aliases: []string{"limit ls", "limits list", "limits ls"}, synopsis: "[--over] [--json]", short: "senders' usage against the sending limits", run: out(cmdLimitList)},
		{name: "firewall show", synopsis: "[--json]", short: "the nftables ruleset mailgate wants, and how the kernel's differs", run: out(cmdFirewallShow)},
		{name: "firewall apply", synopsis: "[--json]", short: "write the ruleset now (the daemon does at start and every reconcile_every)", run: out(cmdFirewallApply)},
		{name: "attack", synopsis: "[--json]", short: "is the server under attack (bruteforce.under_attack)?", run: out(cmdAttack(false))},
		{name: "attack end", synopsis: "[--json]", short: "end \"under attack\" now (logins from new places are let in again)", run: out(cmdAttack(true))},
		{name: "notify test", synopsis: "[--target NAME]", short: "send a test notification to each [[notify]] target of the config file, once, and show each answer",
			long: "Runs in the CLI, not through the daemon: it reads the config file and the webhook keys (run it as the daemon's user). Exits 1 when a target fails. See docs/notifications.md.",
			run:  out(cmdNotifyTest)},
		{name: "reload", synopsis: "[--json]", short: "re-read the daemon's config file and apply it, keeping counters, bans and permits (also SIGHUP, systemctl reload)", run: out(cmdReload)},
		{name: "audit", synopsis: "[--limit N] [--json]", short: "who changed which rule, ban or permit", run: out(cmdAudit)},
		{name: "import ispconfig", synopsis: "(--csv F | --sql F | --mysql DSN) [--dry-run] [--sync] [--json]", short: "import ISPConfig's mail_user_ip_restriction rules", run: out(cmdImportISPConfig)},
		{name: "import user-allowed", synopsis: "--file F [--dry-run] [--json]", short: "import login|CC and login|IP lines (the nginx country script's exceptions)", run: out(cmdImportUserAllowed)},
		{name: "password check", synopsis: "[--login L] [--json]", short: "does the password on standard input pass the [password] policy?",
			long: "Reads one line from standard input (never from the command line; without echo on a terminal), at most 1024 bytes, and checks it against the config file's policy: length, character classes, the zxcvbn score, the login's name and domain, the breached list. Exits 0 when it passes, 1 when it fails (every reason is printed), 2 for a wrong command line or input. Needs no daemon.",
			run:  cmdPasswordCheck(os.Stdin)},
		{name: "password generate", synopsis: "[--length N | --words N] [--count N] [--login L]", short: "make passwords that pass the policy (crypto/rand)",
			long: "Characters by default (16, from all four classes, no look-alike letters); --words N makes passphrases of N capitalised words and a digit, joined by '-', from a word list derived from zxcvbn's English frequency list.",
			run:  out(cmdPasswordGenerate)},
		{name: "password weak", synopsis: "[--days N] [--json]", short: "logins seen with a weak password at the nginx door (password.check_at_login)", run: out(cmdPasswordWeak)},
		{name: "console-user add", synopsis: "NAME", short: "add a user of the admin console, or change its password (read from standard input)",
			long: "Reads one line from standard input (without echo on a terminal), at least 12 and at most 1024 bytes, hashes it with Argon2id and writes NAME:hash to console.users_file (mode 0600). The running daemon reads the file again at the next sign-in. Needs no daemon; never prints the password.",
			run:  cmdConsoleUserAdd(os.Stdin)},
		{name: "console-user rm", aliases: []string{"console-user remove", "console-user del"}, synopsis: "NAME", short: "remove a user of the admin console", run: out(cmdConsoleUserRemove)},
		{name: "console-user list", aliases: []string{"console-user ls"}, synopsis: "[--json]", short: "the users of the admin console", run: out(cmdConsoleUserList)},
		{name: "backup", synopsis: "[--json] FILE", short: "a consistent copy of the store, taken while the daemon runs (a new file, mode 0600)", run: out(cmdBackup)},
		{name: "hook postlogin", synopsis: "[--socket PATH] [--timeout D] PROTOCOL CONTINUATION [ARGS...]", short: "Dovecot post-login script: report the login, then run CONTINUATION",
			long: "Reports the login in USER and IP to the hook socket (default " + defaultHookSocket + "), then executes CONTINUATION whatever happened. Flags end at PROTOCOL. Never writes to stdout (the mail client's connection).",
			run:  cmdHookPostloginRun},
		{name: "replay", synopsis: "(--log FILE... | --events FILE...) [--programs LIST] [--journal] [--store] [--from T] [--to T] [--json]",
			short: "what these rules would have done: run a mail log or an events file through the engine",
			long:  "Runs the engine the config builds (its rules, [bruteforce], [geoip] and [relay]; with --store also the rules stored in store.path, opened read-only) over the input in virtual time: nothing sleeps, and no store, firewall or daemon is touched. Each attempt is decided as a door would before the password check; a refused one never reaches the check, an allowed one's result is reported to the engine. Reports attempts by verdict and reason, bans made, legitimate users refused and when, the guesses that reached a password check per account, and relay permits granted. The events format is in docs/replay.md.",
			run:   out(cmdReplay)},
		{name: "version", synopsis: "[--json]", short: "print the version and the commit it was built from", run: out(cmdVersion)},
		{name: "help", synopsis: "[COMMAND]", short: "help on mailgate or one command", run: out(cmdHelp)},
	}
}

// Adapters from the commands' own signatures.

func out(f func(context.Context, *flag.FlagSet, []string, io.Writer) error) runFunc {
	return func(ctx context.Context, fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
		return f(ctx, fs, args, stdout)
	}
}

func withStderr(f func(context.Context, *flag.FlagSet, []string, io.Writer) error) runFunc {
	return func(ctx context.Context, fs *flag.FlagSet, args []string, _, stderr io.Writer) error {
		return f(ctx, fs, args, stderr)
	}
}

// is reports whether word i of the command's name, or of an alias, is w.
func (c *command) is(i int, w string) bool {
	for _, n := range append([]string{c.name}, c.aliases...) {
		if f := strings.Fields(n); i < len(f) && f[i] == w {
			return true
		}
	}
	return false
}

// flags returns the command's flags, learnt by running it with --help.
func (c *command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_ = c.run(context.Background(), fs, []string{"--help"}, io.Discard, io.Discard)
	return fs
}

// commonFlags are the flags every client command takes; the synopsis
// leaves them out.
var commonFlags = map[string]bool{"config": true, "socket": true, "server": true, "token-file": true, "ca-file": true}

const helpFooter = `Every command takes --config FILE (default ` + config.DefaultPath + `, or built-in
defaults when that file does not exist); client commands also take --socket PATH,
or --server URL with --token-file FILE (or MAILGATE_TOKEN) for another node.
Services: imap, pop3, smtp (also covers submission), submission, sieve, all.
Exit status: 0 done, 1 failed, 2 wrong command line, 3 explain: refused.
'mailgate COMMAND --help' shows a command's flags; man mailgate has them all.
`

// printUsage prints every command with its synopsis and one line.
func printUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, "mailgate decides whether mail logins and relay attempts may proceed.\n\nUsage:\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for i := range cmds {
		c := &cmds[i]
		if c.hidden {
			continue
		}
		fmt.Fprintf(tw, "  mailgate %s\t%s\n", c.name, c.short)
	}
	tw.Flush()
	fmt.Fprint(w, "\n"+helpFooter)
}

// flagLine is how a flag is shown: "--account A".
func flagLine(c *command, f *flag.Flag) string {
	s := "--" + f.Name
	if p := placeholder(c, f); p != "" {
		s += " " + p
	}
	return s
}

// placeholder is the value a flag takes as the synopsis names it, or as
// a backquoted word in its help; "" for a switch.
func placeholder(c *command, f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return ""
	}
	words := strings.Fields(c.synopsis)
	for i, w := range words {
		if strings.TrimLeft(w, "([") == "--"+f.Name && i+1 < len(words) {
			if p := trimClosing(words[i+1]); p != "" && !strings.HasPrefix(p, "-") && p != "|" {
				return p
			}
		}
	}
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "string", "value":
		return strings.ToUpper(f.Name)
	case "duration":
		return "D"
	case "int":
		return "N"
	}
	return name
}

// trimClosing drops the brackets that close a group around a synopsis
// word: "CC[,CC])]" is "CC[,CC]".
func trimClosing(w string) string {
	for strings.HasSuffix(w, ")") || strings.HasSuffix(w, "]") {
		open := strings.Count(w, "(") + strings.Count(w, "[")
		closing := strings.Count(w, ")") + strings.Count(w, "]")
		if closing <= open {
			break
		}
		w = w[:len(w)-1]
	}
	return w
}

// flagHelp is the flag's help without backquotes, with its default when
// it has one worth saying.
func flagHelp(f *flag.Flag) string {
	_, usage := flag.UnquoteUsage(f)
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !strings.Contains(usage, "default") {
		usage += " (default " + f.DefValue + ")"
	}
	return usage
}

// sortedFlags is the command's flags: its own in name order, then the
// common ones.
func sortedFlags(fs *flag.FlagSet) []*flag.Flag {
	var own, common []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if commonFlags[f.Name] {
			common = append(common, f)
		} else {
			own = append(own, f)
		}
	})
	return append(own, common...)
}

// printCommandHelp is CMD --help.
func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: mailgate %s", c.name)
	if c.synopsis != "" {
		fmt.Fprint(w, " "+c.synopsis)
	}
	fmt.Fprintf(w, "\n\n%s%s.\n", strings.ToUpper(c.short[:1]), c.short[1:])
	if c.long != "" {
		fmt.Fprintf(w, "%s\n", c.long)
	}
	fl := sortedFlags(fs)
	if len(fl) == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags:\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, f := range fl {
		fmt.Fprintf(tw, "  %s\t%s\n", flagLine(c, f), flagHelp(f))
	}
	tw.Flush()
}

// cmdHelp is `mailgate help [COMMAND]`, and the hidden `help --man` and
// `help --bash-completion` that print the man page and the completion
// script.
func cmdHelp(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	man := fs.Bool("man", false, "print the man page mailgate(8) in roff")
	bash := fs.Bool("bash-completion", false, "print the bash completion script")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cmds := commands()
	switch {
	case *man:
		writeMan(stdout, cmds)
		return nil
	case *bash:
		writeBashCompletion(stdout, cmds)
		return nil
	case len(pos) == 0:
		printUsage(stdout, cmds)
		return nil
	}
	c, _, err := findCommand(cmds, pos)
	if err != nil {
		return err
	}
	printCommandHelp(stdout, c, c.flags())
	return nil
}

// nearest is the candidate closest to s by edit distance, if it is close
// enough to be a typo (at most a third of its length, at least 1).
func nearest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := config.EditDistance(s, c)
		if best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(1, len(best)/3) {
		return ""
	}
	return best
}

// didYouMean is "; did you mean X?" or "".
func didYouMean(s string, candidates []string) string {
	if n := nearest(s, candidates); n != "" {
		return fmt.Sprintf("; did you mean %s?", n)
	}
	return ""
}

// groups are the first words of two-word commands, in table order.
func groups(cmds []command) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cmds {
		if c.hidden {
			continue
		}
		w := strings.Fields(c.name)[0]
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// sortedNames is the table's command names, sorted (for the completion).
func sortedNames(cmds []command) []string {
	var out []string
	for _, c := range cmds {
		if !c.hidden {
			out = append(out, c.name)
		}
	}
	sort.Strings(out)
	return out
}
