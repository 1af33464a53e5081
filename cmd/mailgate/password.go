package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/password"
)

// exitWeak is password check's status for a password that fails.
const exitWeak exitStatus = 1

// cmdPasswordCheck checks the password on stdin (never an argument: argv
// is visible to every user in ps) against the config file's policy. It
// works without the daemon.
func cmdPasswordCheck(stdin *os.File) func(context.Context, *flag.FlagSet, []string, io.Writer, io.Writer) error {
	return func(_ context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
		path := fs.String("config", "", "the config `FILE` whose [password] policy applies (default "+config.DefaultPath+")")
		login := fs.String("login", "", "the account (`LOGIN`) the password is for: its name and domain may not be in it")
		jsonOut := fs.Bool("json", false, "print JSON")
		if pos, err := parseFlags(fs, args); err != nil {
			return err
		} else if len(pos) > 0 {
			return fmt.Errorf("%w: password check: the password is read from standard input, never from the command line", errUsage)
		}
		p, err := loadPolicy(*path)
		if err != nil {
			return err
		}
		defer p.Breached.Close()
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		res, err := p.Check(pw, *login)
		if err != nil {
			return fmt.Errorf("%w: password check: %v", errUsage, err)
		}
		if *jsonOut {
			if err := printJSON(stdout, res); err != nil {
				return err
			}
		} else {
			printResult(stdout, res)
		}
		if !res.OK {
			return exitWeak
		}
		return nil
	}
}

func printResult(w io.Writer, r password.Result) {
	score := ""
	if r.Score >= 0 {
		score = fmt.Sprintf(" (score %d of 4)", r.Score)
	}
	if r.OK {
		fmt.Fprintf(w, "ok: the password passes the policy%s\n", score)
		return
	}
	fmt.Fprintf(w, "weak: the password fails the policy%s\n", score)
	for _, x := range r.Reasons {
		fmt.Fprintf(w, "  %s: %s\n", x.Code, x.Text)
	}
}

// readPassword reads one line from in, at most password.MaxLen bytes
// without its line end. On a terminal it prompts on stderr and turns
// echo off while the password is typed.
func readPassword(in *os.File, stderr io.Writer) (string, error) {
	fd := int(in.Fd())
	if t, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		fmt.Fprint(stderr, "Password: ")
		noEcho := *t
		noEcho.Lflag &^= unix.ECHO
		noEcho.Lflag |= unix.ICANON
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
			return "", fmt.Errorf("turning off echo: %w", err)
		}
		defer func() {
			unix.IoctlSetTermios(fd, unix.TCSETS, t)
			fmt.Fprintln(stderr)
		}()
	}
	r := bufio.NewReaderSize(io.LimitReader(in, password.MaxLen+3), password.MaxLen+3)
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if len(line) > password.MaxLen {
		return "", fmt.Errorf("%w: password check: the password is longer than %d bytes", errUsage, password.MaxLen)
	}
	if line == "" {
		return "", fmt.Errorf("%w: password check: no password on standard input", errUsage)
	}
	return line, nil
}

func cmdPasswordGenerate(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	path := fs.String("config", "", "the config `FILE` whose [password] policy the passwords pass (default "+config.DefaultPath+")")
	length := fs.Int("length", 0, "characters per password (`N`; default 16, at least password.min_length)")
	words := fs.Int("words", 0, "make passphrases of `N` words instead (3 to 20; 5 is 65 bits)")
	count := fs.Int("count", 1, "how many passwords (`N`, 1 to 1000)")
	login := fs.String("login", "", "the account (`LOGIN`) the passwords are for")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: password generate: unexpected argument %q", errUsage, pos[0])
	}
	if *length != 0 && *words != 0 {
		return fmt.Errorf("%w: password generate: give --length or --words, not both", errUsage)
	}
	if *count < 1 || *count > 1000 {
		return fmt.Errorf("%w: password generate: --count %d is outside 1 to 1000", errUsage, *count)
	}
	p, err := loadPolicy(*path)
	if err != nil {
		return err
	}
	defer p.Breached.Close()
	g := password.NewGenerator(&p)
	for range *count {
		var pw string
		if *words != 0 {
			pw, err = g.Words(*words, *login)
		} else {
			pw, err = g.Chars(*length, *login)
		}
		if err != nil {
			if errors.Is(err, password.ErrCannotGenerate) {
				return err
			}
			return fmt.Errorf("%w: password generate: %v", errUsage, err)
		}
		fmt.Fprintln(stdout, pw)
	}
	return nil
}

func cmdPasswordWeak(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	days := fs.Int("days", 0, "logins seen in the last `N` days (default password.weak_days)")
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: password weak: unexpected argument %q", errUsage, pos[0])
	}
	if *days < 0 || *days > api.MaxWeakDays {
		return fmt.Errorf("%w: password weak: --days %d is outside 1 to %d", errUsage, *days, api.MaxWeakDays)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ws, err := c.WeakLogins(ctx, *days)
	if err != nil {
		return fmt.Errorf("password weak: %w", err)
	}
	if *jsonOut {
		if ws == nil {
			ws = []api.WeakJSON{}
		}
		return printJSON(stdout, ws)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGIN\tLAST SEEN")
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\n", w.Login, w.LastSeen.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
