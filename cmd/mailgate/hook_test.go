package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// TestMain lets the tests run this binary as mailgate itself: with
// MAILGATE_TEST_MAIN=1 it is main.
func TestMain(m *testing.M) {
	if os.Getenv("MAILGATE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hookSocket is a fake daemon's hook socket that records the logins.
type hookSocket struct {
	path string
	mu   sync.Mutex
	got  []string
}

func startHookSocket(t *testing.T) *hookSocket {
	t.Helper()
	h := &hookSocket{path: filepath.Join(t.TempDir(), "hook.sock")}
	ln, err := net.Listen("unix", h.path)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: api.HookHandler(func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.got = append(h.got, strings.Join([]string{login, svc.String(), addr.String(), door}, " "))
		return relay.Permit{Prefix: netip.PrefixFrom(addr, addr.BitLen()), Login: login, Service: svc, Door: door, Granted: now, Expires: now.Add(time.Minute), Logins: 1}, relay.Granted
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return h
}

func (h *hookSocket) logins() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// hungSocket accepts connections and never answers.
func hungSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return path
}

type hookRun struct {
	stdout, stderr string
	pid            int
	exit           int
}

// runHook runs this binary as `mailgate hook postlogin ARGS...` with env
// added to a minimal environment, as Dovecot's script-login would.
func runHook(t *testing.T, env []string, args ...string) hookRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"hook", "postlogin"}, args...)...)
	cmd.Env = append([]string{"MAILGATE_TEST_MAIN=1", "PATH=/usr/bin:/bin"}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := hookRun{stdout: out.String(), stderr: errOut.String(), pid: cmd.Process.Pid}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The continuation prints what it got; $$ tells whether it replaced the
// hook's process (exec) or is a child of it.
var echoCont = []string{"/bin/sh", "-c", `echo continued "$USER" "$IP" "$USERDB_KEYS" $$ "$@"`, "sh", "-x", "--y"}

func dovecotEnv(user, ip string) []string {
	return []string{"USER=" + user, "IP=" + ip, "USERDB_KEYS=UID GID HOME"}
}

// The hook reports the login, then becomes the continuation: same
// process, same environment, the continuation's arguments untouched (even
// those starting with '-'), nothing of its own on stdout or stderr.
func TestHookReportsAndContinues(t *testing.T) {
	h := startHookSocket(t)
	r := runHook(t, dovecotEnv("Alice@Example.test", "::ffff:127.0.0.171"), append([]string{"--socket", h.path, "imap"}, echoCont...)...)
	want := "continued Alice@Example.test ::ffff:127.0.0.171 UID GID HOME " + strconv.Itoa(r.pid) + " -x --y\n"
	if r.exit != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("hook run: exit %d\nstdout %q\nwant   %q\nstderr %q", r.exit, r.stdout, want, r.stderr)
	}
	if got := h.logins(); len(got) != 1 || got[0] != "alice@example.test imap 127.0.0.171 hook" {
		t.Errorf("reported: %q", got)
	}
	// The continuation's exit status is the hook's: it was exec'd.
	r = runHook(t, dovecotEnv("bob@example.test", "127.0.0.172"), "--socket", h.path, "--timeout", "2s", "pop3", "/bin/sh", "-c", "exit 3")
	if r.exit != 3 || r.stdout != "" || r.stderr != "" {
		t.Errorf("exit status: %+v", r)
	}
	if got := h.logins(); len(got) != 2 || got[1] != "bob@example.test pop3 127.0.0.172 hook" {
		t.Errorf("reported: %q", got)
	}
}

// Whatever goes wrong, the continuation runs, and stderr (Dovecot's log)
// gets one line.
func TestHookTroubleStillContinues(t *testing.T) {
	h := startHookSocket(t)
	absent := filepath.Join(t.TempDir(), "absent.sock")
	hung := hungSocket(t)
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string // in the stderr line
	}{
		{"no daemon", dovecotEnv("a@x.test", "127.0.0.181"), []string{"--socket", absent, "imap"}, "mailgate is not running"},
		{"daemon hangs", dovecotEnv("a@x.test", "127.0.0.182"), []string{"--socket", hung, "--timeout", "300ms", "imap"}, "did not answer on " + hung + " within 300ms"},
		{"no IP", []string{"USER=a@x.test"}, []string{"--socket", h.path, "imap"}, "USER or IP is not set"},
		{"refused", dovecotEnv("a\x01@x.test", "127.0.0.183"), []string{"--socket", h.path, "imap"}, "has a control character"},
		{"bad ip", dovecotEnv("a@x.test", "not-an-ip"), []string{"--socket", h.path, "imap"}, `ip: "not-an-ip" is not an IP address`},
		{"unknown protocol", dovecotEnv("a@x.test", "127.0.0.184"), []string{"--socket", h.path, "lmtp"}, `protocol "lmtp" is not imap`},
		{"bad flag", dovecotEnv("a@x.test", "127.0.0.185"), []string{"--socket", h.path, "--timeout", "soon", "imap"}, "bad command line"},
		{"unknown flag", dovecotEnv("a@x.test", "127.0.0.186"), []string{"--frob", "imap"}, "bad command line"},
		{"zero timeout", dovecotEnv("a@x.test", "127.0.0.187"), []string{"--socket", h.path, "--timeout", "0s", "imap"}, "is not positive"},
	} {
		r := runHook(t, c.env, append(c.args, echoCont...)...)
		user, ip := "", ""
		for _, e := range c.env {
			if v, ok := strings.CutPrefix(e, "USER="); ok {
				user = v
			}
			if v, ok := strings.CutPrefix(e, "IP="); ok {
				ip = v
			}
		}
		cont := "continued " + user + " " + ip + " "
		if r.exit != 0 || !strings.HasPrefix(r.stdout, cont) || !strings.HasSuffix(r.stdout, " "+strconv.Itoa(r.pid)+" -x --y\n") {
			t.Errorf("%s: exit %d, stdout %q, want %q…", c.name, r.exit, r.stdout, cont)
		}
		if !strings.HasPrefix(r.stderr, "mailgate hook: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: stderr %q, want one line with %q", c.name, r.stderr, c.want)
		}
	}
	if got := h.logins(); len(got) != 0 {
		t.Errorf("reported: %q", got)
	}
}

// Without a continuation there is nothing to go on with: a usage error.
// A continuation that cannot run is an error too.
func TestHookCannotContinue(t *testing.T) {
	h := startHookSocket(t)
	env := dovecotEnv("a@x.test", "127.0.0.190")
	for _, c := range []struct {
		args []string
		exit int
		want string
	}{
		{nil, 2, "give the protocol and the command to continue with"},
		{[]string{"imap"}, 2, "give the protocol and the command to continue with"},
		{[]string{"--timeout", "x", "imap"}, 2, "no command to continue with"},
		{[]string{"--socket", h.path, "imap", "/nonexistent/script-login"}, 1, "cannot run the continuation"},
	} {
		r := runHook(t, env, c.args...)
		if r.exit != c.exit || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: %+v", c.args, r)
		}
	}
}

// In-process, with exec replaced: what is exec'd, and how a command line
// the flag package refuses is still split.
func TestHookExecArgs(t *testing.T) {
	var gotPath string
	var gotArgv, gotEnv []string
	proc := hookProcess{
		getenv:   func(string) string { return "" },
		environ:  []string{"A=1"},
		lookPath: exec.LookPath,
		exec: func(path string, argv, envv []string) error {
			gotPath, gotArgv, gotEnv = path, argv, envv
			return nil
		},
	}
	var stderr bytes.Buffer
	err := cmdHookPostlogin(context.Background(), flag.NewFlagSet("hook postlogin", flag.ContinueOnError), []string{"--timeout=1s", "imap", "sh", "-c", "true"}, &stderr, proc)
	if err != nil || gotPath != "/usr/bin/sh" && gotPath != "/bin/sh" || !slices.Equal(gotArgv, []string{"sh", "-c", "true"}) || !slices.Equal(gotEnv, []string{"A=1"}) {
		t.Errorf("exec %q %q %q: %v", gotPath, gotArgv, gotEnv, err)
	}
	if !strings.Contains(stderr.String(), "USER or IP is not set") {
		t.Errorf("stderr %q", stderr.String())
	}
	// The protocol forgotten: the session goes on, and the log says why
	// the login was not reported.
	stderr.Reset()
	gotArgv = nil
	err = cmdHookPostlogin(context.Background(), flag.NewFlagSet("hook postlogin", flag.ContinueOnError), []string{"/bin/sh", "-c", "true"}, &stderr, proc)
	if err != nil || !slices.Equal(gotArgv, []string{"/bin/sh", "-c", "true"}) || !strings.Contains(stderr.String(), "no protocol before the continuation") {
		t.Errorf("no protocol: exec %q, stderr %q: %v", gotArgv, stderr.String(), err)
	}
	for _, c := range []struct{ in, want []string }{
		{[]string{"--bogus", "imap", "/x", "-a"}, []string{"imap", "/x", "-a"}},
		{[]string{"--socket", "/s", "--timeout", "zz", "pop3", "/x"}, []string{"pop3", "/x"}},
		{[]string{"-timeout=zz", "imap", "/x"}, []string{"imap", "/x"}},
		{[]string{"--", "-imap", "/x"}, []string{"-imap", "/x"}},
		{[]string{"--timeout"}, nil},
	} {
		if got := hookArgsAfterFlags(c.in); !slices.Equal(got, c.want) {
			t.Errorf("hookArgsAfterFlags(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
