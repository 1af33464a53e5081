package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// version and commit are set at build time by the Makefile:
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty) -X main.commit=$(git rev-parse HEAD)"
//
// They are variables only because -X can set nothing else. A plain `go
// build` leaves them empty: buildVersion falls back to what the Go
// toolchain recorded (vcs.revision).
var version, commit string

// devVersion names a build without a version from git.
const devVersion = "0.2.0-dev"

// buildVersion returns the version and the commit mailgate was built from.
func buildVersion() (v, c string) {
	v, c = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok && c == "" {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if c != "" && dirty {
			c += "-dirty"
		}
	}
	if v == "" {
		v = devVersion
		if c != "" {
			v += "+" + shortCommit(c)
		}
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func cmdVersion(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: version: unexpected argument %q", errUsage, pos[0])
	}
	v, c := buildVersion()
	if *jsonOut {
		return printJSON(stdout, map[string]string{"version": v, "commit": c})
	}
	fmt.Fprintf(stdout, "mailgate %s (commit %s)\n", v, c)
	return nil
}
