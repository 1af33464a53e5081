package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/rules"
)

// defaultHookSocket is where `hook postlogin` reports logins unless told:
// the default of [relay] hook_socket.
const defaultHookSocket = "/run/mailgate/hook.sock"

// hookProcess is what `hook postlogin` takes from its process; tests
// replace exec.
type hookProcess struct {
	getenv   func(string) string
	environ  []string
	lookPath func(string) (string, error)
	exec     func(path string, argv, envv []string) error // returns only on failure
}

func osHookProcess() hookProcess {
	return hookProcess{getenv: os.Getenv, environ: os.Environ(), lookPath: exec.LookPath, exec: syscall.Exec}
}

// cmdHookPostlogin runs as Dovecot's post-login script (protocols.md §4.2):
//
//	service imap-postlogin {
//	  executable = script-login /usr/local/bin/mailgate hook postlogin imap
//	  vsz_limit = 0 # the Go runtime cannot start within Dovecot's default 256M
//	  ...
//
// makes script-login run `mailgate hook postlogin imap
// /usr/lib/dovecot/script-login` with USER and IP set. It reports the login
// to the hook socket, then execs the continuation, whatever happened: the
// user's session never breaks because of mailgate. Trouble is one line on
// stderr (Dovecot's log). Stdout is the mail client's connection: nothing
// is written to it.
func cmdHookPostlogin(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer, proc hookProcess) error {
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", defaultHookSocket, "the hook socket ([relay] hook_socket)")
	timeout := fs.Duration("timeout", time.Second, "how long to wait for mailgate before going on")
	var trouble error
	var pos []string
	// Flags stop at PROTOCOL: the continuation's arguments are its own.
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return err
	} else if err != nil {
		trouble = fmt.Errorf("bad command line (%v); login not reported", err)
		pos = hookArgsAfterFlags(args)
	} else {
		pos = fs.Args()
		if *timeout <= 0 {
			trouble = fmt.Errorf("bad command line (--timeout %v is not positive); login not reported", *timeout)
		}
	}
	if len(pos) > 0 && strings.HasPrefix(pos[0], "/") {
		// The protocol was forgotten (executable = script-login mailgate
		// hook postlogin): go on with the session all the same.
		if trouble == nil {
			trouble = errors.New("no protocol before the continuation (want: hook postlogin imap CONTINUATION); login not reported")
		}
		pos = append([]string{""}, pos...)
	}
	if len(pos) < 2 {
		if trouble != nil {
			return fmt.Errorf("%w: hook postlogin: %v, and no command to continue with", errUsage, trouble)
		}
		return fmt.Errorf("%w: hook postlogin: give the protocol and the command to continue with, as Dovecot's script-login does: "+
			"mailgate hook postlogin imap /usr/lib/dovecot/script-login", errUsage)
	}
	proto, cont := pos[0], pos[1:]
	if trouble == nil {
		trouble = reportLogin(ctx, *socket, *timeout, proto, proc.getenv)
	}
	if trouble != nil {
		fmt.Fprintln(stderr, "mailgate hook: "+oneLine(trouble.Error()))
	}
	path, err := proc.lookPath(cont[0])
	if err != nil {
		return fmt.Errorf("hook postlogin: cannot run the continuation: %w", err)
	}
	if err := proc.exec(path, cont, proc.environ); err != nil {
		return fmt.Errorf("hook postlogin: cannot run the continuation %s: %w", path, err)
	}
	return nil
}

// cmdHookPostloginRun is the command table's entry: never stdout (it is
// the mail client's connection).
func cmdHookPostloginRun(ctx context.Context, fs *flag.FlagSet, args []string, _, stderr io.Writer) error {
	return cmdHookPostlogin(ctx, fs, args, stderr, osHookProcess())
}

// reportLogin posts the login in USER and IP to the hook socket.
func reportLogin(ctx context.Context, socket string, timeout time.Duration, proto string, getenv func(string) string) error {
	if rules.ProtocolService(proto) == rules.OtherService {
		return fmt.Errorf("protocol %.32q is not imap, pop3, smtp, submission or sieve; login not reported", proto)
	}
	user, ip := getenv("USER"), getenv("IP")
	if user == "" || ip == "" {
		return errors.New("USER or IP is not set (is this run by Dovecot's script-login?); login not reported")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := api.NewUnixClient(socket).ReportLogin(ctx, api.LoginReport{Login: user, IP: ip, Service: proto, Door: "hook"})
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("mailgate did not answer on %s within %v", socket, timeout)
	}
	if err != nil {
		return fmt.Errorf("login of %.80q from %.64q not reported: %w", user, ip, err)
	}
	return nil
}

// hookArgsAfterFlags finds PROTOCOL and the continuation in a command line
// the flag package refused: skip what looks like flags (and the value of
// the two that take one), keep the rest.
func hookArgsAfterFlags(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args[i+1:]
		}
		if len(a) < 2 || a[0] != '-' {
			return args[i:]
		}
		name := strings.TrimLeft(a, "-")
		if (name == "socket" || name == "timeout") && i+1 < len(args) {
			i++
		}
	}
	return nil
}

// oneLine keeps a message on one log line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}
