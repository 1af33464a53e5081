// Command mailgate decides, for every mail login and relay attempt,
// whether it may proceed. `mailgate serve` runs the daemon; the other
// subcommands manage it through its admin API.
//
// Every command is one row of the table in commands.go: --help, the man
// page (docs/mailgate.8, from `mailgate help --man`) and the bash
// completion are printed from it.
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

// errUsage marks errors in the command line: exit status 2.
var errUsage = errors.New("usage")

// exitStatus is an outcome that is not an error but ends the program with
// a status other than 0 (explain's refusal: 3). Its message, if any, was
// printed already.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitRefused is explain's status when the verdict is not "allow".
const exitRefused exitStatus = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var st exitStatus
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &st):
		os.Exit(int(st))
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "mailgate: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "mailgate: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		printUsage(stderr, cmds)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "--help", "-help", "-h":
		printUsage(stdout, cmds)
		return nil
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	c, rest, err := findCommand(cmds, args)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err = c.run(ctx, fs, rest, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, c, fs)
	}
	return err
}

// findCommand finds the table row args name: the longest match of one or
// two words (an alias counts), and the arguments after it. An unknown
// command is a usage error that names the nearest one.
func findCommand(cmds []command, args []string) (*command, []string, error) {
	first := args[0]
	var sub string
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		sub = args[1]
	}
	var top *command
	group := false
	for i := range cmds {
		c := &cmds[i]
		w := strings.Fields(c.name)
		if !c.is(0, first) {
			continue
		}
		if len(w) == 2 {
			group = true
			if sub != "" && c.is(1, sub) {
				return c, args[2:], nil
			}
		} else {
			top = c
		}
	}
	if top != nil {
		return top, args[1:], nil
	}
	var names []string
	for i := range cmds {
		if !cmds[i].hidden {
			names = append(names, cmds[i].name)
		}
	}
	switch {
	case group && sub == "":
		return nil, nil, fmt.Errorf("%w: %s needs a subcommand: %s", errUsage, first, strings.Join(subcommands(cmds, first), ", "))
	case group:
		return nil, nil, fmt.Errorf("%w: unknown command %q%s", errUsage, first+" "+sub, didYouMean(first+" "+sub, names))
	}
	typed := first
	if sub != "" {
		// "rule ad" is nearer to "rule add" than "rule" is.
		if s := nearest(first+" "+sub, names); s != "" {
			return nil, nil, fmt.Errorf("%w: unknown command %q; did you mean %s? (mailgate --help lists them)", errUsage, first, s)
		}
	}
	return nil, nil, fmt.Errorf("%w: unknown command %q%s", errUsage, typed, didYouMean(typed, names))
}

func subcommands(cmds []command, first string) []string {
	var subs []string
	for _, c := range cmds {
		if w := strings.Fields(c.name); len(w) == 2 && w[0] == first && !c.hidden {
			subs = append(subs, w[1])
		}
	}
	return subs
}

// parseFlags parses flags that may stand before, between or after
// positional arguments, and returns the positional ones. Errors name the
// flag as the docs do (--flag) and suggest the nearest flag.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError(fs, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError rewrites the flag package's error in --flag form.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
		return fmt.Errorf("%w: %s: unknown flag --%s%s", errUsage, fs.Name(), name, didYouMean("--"+name, names))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("%w: %s: --%s needs a value", errUsage, fs.Name(), strings.TrimLeft(name, "-"))
	}
	// invalid value "x" for flag -limit: parse error
	if i := strings.Index(msg, " for flag -"); i >= 0 {
		msg = msg[:i] + " for flag --" + strings.TrimLeft(msg[i+len(" for flag "):], "-")
	}
	return fmt.Errorf("%w: %s: %s", errUsage, fs.Name(), msg)
}
