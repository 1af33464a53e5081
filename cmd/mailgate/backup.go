package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// cmdBackup writes a consistent copy of the running daemon's store to a
// new file. The daemon streams the copy; this process writes the file
// with the caller's rights, so the daemon never writes where a client
// points it.
func cmdBackup(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: backup: give the file to write (a new file), e.g. mailgate backup /root/mailgate-$(date +%%F).db", errUsage)
	}
	path := pos[0]
	c, err := cf.client()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("backup: %s exists; give a new file name (a backup never overwrites)", path)
		}
		return fmt.Errorf("backup: %w", err)
	}
	n, err := c.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("backup: %w", err)
	}
	if *jsonOut {
		return printJSON(stdout, struct {
			File  string `json:"file"`
			Bytes int64  `json:"bytes"`
		}{path, n})
	}
	fmt.Fprintf(stdout, "store copied to %s (%d bytes)\n", path, n)
	return nil
}
