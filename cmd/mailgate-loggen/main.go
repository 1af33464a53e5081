// Command mailgate-loggen writes a synthetic mail log (internal/maillog/
// loggen) and parses mail logs with internal/maillog, for the benchmark
// in docs/performance.md:
//
//	mailgate-loggen gen [-lines N] [-seed S] FILE   write N lines (default 1000000, seed 1)
//	mailgate-loggen count FILE...                   parse the files, print counts and lines/s
//
// It is a measuring tool, not part of the daemon.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"mailgate/internal/maillog"
	"mailgate/internal/maillog/loggen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mailgate-loggen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: mailgate-loggen gen [-lines N] [-seed S] FILE | mailgate-loggen count FILE [FILE]")
	}
	switch args[0] {
	case "gen":
		fs := flag.NewFlagSet("gen", flag.ContinueOnError)
		lines := fs.Int("lines", 1000000, "lines to write")
		seed := fs.Uint64("seed", 1, "random seed")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("gen: want one FILE")
		}
		f, err := os.Create(fs.Arg(0))
		if err != nil {
			return err
		}
		st, err := loggen.Generate(f, *lines, *seed)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%+v\n", st)
		return nil
	case "count":
		if len(args) < 2 {
			return errors.New("count: want one FILE or more")
		}
		for _, name := range args[1:] {
			if err := count(name, stdout); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// count parses a file line by line as a log follower would.
func count(name string, stdout io.Writer) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	ref := fi.ModTime()
	start := time.Now()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maillog.MaxJournalLineLen)
	var lines, events, logins, failures, checks int
	perProgram := map[string]int{}
	var ev maillog.Event
	for sc.Scan() {
		lines++
		if !maillog.ParseLine(sc.Bytes(), ref, &ev) {
			continue
		}
		events++
		perProgram[ev.Program+" "+map[bool]string{true: "login", false: "failure"}[ev.Success]]++
		if ev.Success {
			logins++
		} else {
			failures++
			checks += ev.Attempts
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d := time.Since(start)
	fmt.Fprintf(stdout, "%s: %d lines, %d events (%d logins, %d failure lines = %d password checks) %v in %v; %.0f lines/s\n",
		name, lines, events, logins, failures, checks, perProgram, d.Round(time.Millisecond), float64(lines)/d.Seconds())
	return nil
}
