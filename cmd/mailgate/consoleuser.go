package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"mailgate/internal/config"
	"mailgate/internal/console"
)

// usersFile is the console users file of the config at path (--config).
func usersFile(path string) (string, error) {
	cfg, _, err := config.LoadOrDefault(path)
	if err != nil {
		return "", err
	}
	return cfg.ConsoleUsersFile(), nil
}

// cmdConsoleUserAdd adds a console user or sets its password: read from
// standard input (without echo on a terminal), hashed with Argon2id,
// written to console.users_file. The password is never printed or logged.
func cmdConsoleUserAdd(stdin *os.File) runFunc {
	return func(_ context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
		path := fs.String("config", "", "the config `FILE` naming console.users_file (default "+config.DefaultPath+")")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: console-user add: give one user NAME; the password is read from standard input", errUsage)
		}
		name := pos[0]
		if err := console.CheckUserName(name); err != nil {
			return fmt.Errorf("%w: console-user add: %v", errUsage, err)
		}
		file, err := usersFile(*path)
		if err != nil {
			return err
		}
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		if len(pw) < 12 {
			return fmt.Errorf("%w: console-user add: the password is shorter than 12 characters ('mailgate password generate' makes one)", errUsage)
		}
		hash, err := console.HashPassword([]byte(pw))
		if err != nil {
			return err
		}
		existed, err := console.SetUser(file, name, hash)
		if err != nil {
			return fmt.Errorf("console-user add: %w", err)
		}
		if existed {
			fmt.Fprintf(stdout, "password of console user %s changed in %s\n", name, file)
		} else {
			fmt.Fprintf(stdout, "console user %s added to %s\n", name, file)
		}
		return nil
	}
}

func cmdConsoleUserRemove(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	path := fs.String("config", "", "the config `FILE` naming console.users_file (default "+config.DefaultPath+")")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: console-user rm: give one user NAME", errUsage)
	}
	file, err := usersFile(*path)
	if err != nil {
		return err
	}
	existed, err := console.SetUser(file, pos[0], "")
	if err != nil {
		return fmt.Errorf("console-user rm: %w", err)
	}
	if !existed {
		return fmt.Errorf("console-user rm: no console user %s in %s", pos[0], file)
	}
	fmt.Fprintf(stdout, "console user %s removed from %s (its signed-in sessions end with their next request)\n", pos[0], file)
	return nil
}

func cmdConsoleUserList(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	path := fs.String("config", "", "the config `FILE` naming console.users_file (default "+config.DefaultPath+")")
	jsonOut := fs.Bool("json", false, "print JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: console-user list takes no arguments", errUsage)
	}
	file, err := usersFile(*path)
	if err != nil {
		return err
	}
	names, err := console.ListUsers(file)
	if err != nil {
		return err
	}
	if *jsonOut {
		if names == nil {
			names = []string{}
		}
		return printJSON(stdout, names)
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return nil
}
