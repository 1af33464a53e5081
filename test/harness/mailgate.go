package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// BinEnv names an environment variable that, when set, points at a
// prebuilt mailgate binary to use instead of building one.
const BinEnv = "MAILGATE_E2E_BIN"

// built is the mailgate binary built once per test process.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Mailgate returns the path of a mailgate binary built from this module's
// cmd/mailgate (once per test process; `go build` reuses its cache), or
// the binary named by $MAILGATE_E2E_BIN. A build failure fails the test
// with the compiler's output.
func Mailgate(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("harness: $%s: %v", BinEnv, err)
		}
		return p
	}
	built.once.Do(func() {
		built.path, built.err = buildMailgate()
	})
	if built.err != nil {
		t.Fatalf("harness: build mailgate: %v", built.err)
	}
	return built.path
}

func buildMailgate() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the mailgate module")
	}
	dir, err := os.MkdirTemp("", "mailgate-e2e-bin-")
	if err != nil {
		return "", err
	}
	built.dir = dir
	bin := filepath.Join(dir, "mailgate")
	root := filepath.Dir(gomod)
	if err := statSources(root); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "mailgate/cmd/mailgate")
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build mailgate/cmd/mailgate in %s: %w\n%s", cmd.Dir, err, trimOutput(out))
	}
	return bin, nil
}

// statSources stats every file of the module but those in hidden and
// testdata directories (Go sources, embedded assets). `go test` caches a
// passing result keyed on the files the test binary opened or stat'ed, but
// the mailgate binary is built by a child process: without this, a change
// to mailgate's code would not rerun the end-to-end tests.
func statSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			_, err := os.Stat(path)
			return err
		}
		return nil
	})
}

// Main runs the tests and then removes the binary Mailgate built. Call it
// from TestMain: func TestMain(m *testing.M) { harness.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// MG is a running `mailgate serve`.
type MG struct {
	t   testing.TB
	Bin string
	// Dir holds the config file and the captured stdout and stderr; it is
	// also the daemon's working directory.
	Dir         string
	ConfigPath  string
	AdminSocket string // [admin] socket
	DovecotAddr string // [dovecot] listen, host:port
	NetNS       string // the network namespace it runs in; "" = the test's

	stdoutPath string
	stderrPath string
	proc       *process
}

// mgConfig is the part of mailgate's config the harness needs to know:
// where to look for readiness.
type mgConfig struct {
	Admin struct {
		Socket string `toml:"socket"`
	} `toml:"admin"`
	Dovecot struct {
		Enabled *bool  `toml:"enabled"`
		Listen  string `toml:"listen"`
	} `toml:"dovecot"`
	Postfix *struct{} `toml:"postfix"`
	Relay   *struct{} `toml:"relay"`
}

// isolate keeps parallel daemons apart: a config that does not mention
// [postfix] or [relay] gets the Postfix door off and no hook socket,
// instead of the defaults (127.0.0.1:10040, /run/mailgate/hook.sock) that
// every daemon would share.
func isolate(configTOML string, cfg *mgConfig) string {
	if cfg.Postfix == nil {
		configTOML += "\n[postfix]\nenabled = false\n"
	}
	if cfg.Relay == nil {
		configTOML += "\n[relay]\nhook_socket = \"\"\n"
	}
	return configTOML
}

// StartMailgate writes configTOML to a file in a fresh temp dir, starts
// `mailgate serve --config <file>` with stdout (the decision lines) and
// stderr (diagnostics) captured to files there, and waits until the admin
// API answers GET /healthz on its unix socket and, if the Dovecot door is
// enabled, its listener accepts TCP. The config must set [admin] socket
// (the default under /run is not for tests); one that leaves out
// [postfix] or [relay] runs without the Postfix door and the hook socket
// (isolate). The daemon is stopped when
// the test ends; its stderr is logged if the test failed.
func StartMailgate(t testing.TB, configTOML string) *MG {
	t.Helper()
	return startMailgate(t, configTOML, "")
}

// StartMailgateIn is StartMailgate with the daemon inside the network
// namespace netns (`ip netns exec`), e.g. a Net's server for the firewall
// tests. Its admin socket is a file, reachable from the test; its TCP
// listeners are the namespace's (dial them with NS.DialContext).
func StartMailgateIn(t testing.TB, netns, configTOML string) *MG {
	t.Helper()
	return startMailgate(t, configTOML, netns)
}

func startMailgate(t testing.TB, configTOML, netns string) *MG {
	t.Helper()
	var cfg mgConfig
	if _, err := toml.Decode(configTOML, &cfg); err != nil {
		t.Fatalf("harness: mailgate config does not parse: %v\n%s", err, configTOML)
	}
	if cfg.Admin.Socket == "" {
		t.Fatalf("harness: the mailgate config must set [admin] socket")
	}
	configTOML = isolate(configTOML, &cfg)
	if len(cfg.Admin.Socket) > 100 {
		t.Fatalf("harness: admin socket path %q is too long for a unix socket; use harness.TempDir", cfg.Admin.Socket)
	}
	m := &MG{
		t:           t,
		Bin:         Mailgate(t),
		Dir:         TempDir(t, "mg-"),
		AdminSocket: cfg.Admin.Socket,
		NetNS:       netns,
	}
	if cfg.Dovecot.Enabled == nil || *cfg.Dovecot.Enabled {
		m.DovecotAddr = cfg.Dovecot.Listen
		if m.DovecotAddr == "" {
			m.DovecotAddr = "127.0.0.1:4001" // mailgate's default
		}
	}
	m.ConfigPath = filepath.Join(m.Dir, "mailgate.toml")
	m.stdoutPath = filepath.Join(m.Dir, "stdout.log")
	m.stderrPath = filepath.Join(m.Dir, "stderr.log")
	if err := os.WriteFile(m.ConfigPath, []byte(configTOML), 0o600); err != nil {
		t.Fatalf("harness: %v", err)
	}
	// Registered before the start so that a daemon that started but never
	// became ready is stopped too (cleanups run last-in first-out: this one
	// runs before TempDir's removal).
	t.Cleanup(func() {
		if m.proc != nil {
			m.stop()
		}
		if t.Failed() {
			t.Logf("harness: mailgate stderr (%s):\n%s", m.stderrPath, readFile(m.stderrPath))
			t.Logf("harness: mailgate stdout (%s):\n%s", m.stdoutPath, readFile(m.stdoutPath))
		}
	})
	m.start()
	return m
}

// DovecotURL is the auth_policy_server_url for this daemon.
func (m *MG) DovecotURL() string {
	return "http://" + m.DovecotAddr + "/"
}

// start starts the daemon and waits until it is ready.
func (m *MG) start() {
	m.t.Helper()
	open := func(path string) *os.File {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			m.t.Fatalf("harness: %v", err)
		}
		return f
	}
	stdout, stderr := open(m.stdoutPath), open(m.stderrPath)
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(m.Bin, "serve", "--config", m.ConfigPath)
	if m.NetNS != "" {
		// ip netns exec execs the daemon in place: the PID is mailgate's.
		cmd = exec.Command("ip", "netns", "exec", m.NetNS, m.Bin, "serve", "--config", m.ConfigPath)
	}
	cmd.Dir = m.Dir
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	start := time.Now()
	p, err := startProcess(cmd)
	if err != nil {
		m.t.Fatalf("harness: start mailgate serve: %v", err)
	}
	m.proc = p
	err = waitFor(20*time.Second, p.done, func() error {
		if err := m.healthz(); err != nil {
			return fmt.Errorf("admin socket %s: %w", m.AdminSocket, err)
		}
		if m.DovecotAddr != "" && m.NetNS == "" {
			if err := dialTCP(m.DovecotAddr); err != nil {
				return fmt.Errorf("dovecot listener: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		if p.exited() {
			err = fmt.Errorf("%w (exit: %v)", err, p.err)
		}
		m.t.Fatalf("harness: mailgate serve did not become ready: %v\nstderr:\n%s", err, readFile(m.stderrPath))
	}
	m.t.Logf("harness: mailgate serve pid %d ready in %v", cmd.Process.Pid, time.Since(start).Round(time.Millisecond))
}

// stop sends SIGTERM, waits up to 5 s, then SIGKILL. A daemon that does
// not exit cleanly on SIGTERM is a test error: that is how systemd stops
// it.
func (m *MG) stop() {
	m.t.Helper()
	pid := m.proc.cmd.Process.Pid
	err, killed := m.proc.stop(5 * time.Second)
	m.proc = nil
	switch {
	case killed:
		m.t.Errorf("harness: mailgate pid %d ignored SIGTERM for 5 s and was killed", pid)
	case err != nil:
		m.t.Errorf("harness: mailgate pid %d did not exit cleanly on SIGTERM: %v", pid, err)
	}
}

// healthz does GET /healthz on the admin unix socket and wants a 2xx.
func (m *MG) healthz() error {
	c := m.AdminClient()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://mailgate/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return nil
}

// AdminClient returns an HTTP client that talks to the admin API over its
// unix socket; use any host in URLs ("http://mailgate/healthz").
func (m *MG) AdminClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", m.AdminSocket)
			},
			DisableKeepAlives: true,
		},
	}
}

// Restart stops the daemon (SIGTERM) and starts it again with the same
// config, waiting until it is ready. Decision lines of both runs stay in
// DecisionLog. Call it from the goroutine of the test that started the
// daemon (it fails that test if the restart fails).
func (m *MG) Restart() {
	m.t.Helper()
	if m.proc != nil {
		m.stop()
	}
	m.start()
}

// Terminate stops the daemon as systemd does (SIGTERM to its PID) and
// waits up to grace for it to exit; a daemon that does not exit cleanly
// in time is a test error (and is killed). It returns how long the exit
// took. Restart starts it again.
func (m *MG) Terminate(grace time.Duration) time.Duration {
	m.t.Helper()
	if m.proc == nil {
		return 0
	}
	pid := m.proc.cmd.Process.Pid
	start := time.Now()
	err, killed := m.proc.stop(grace)
	took := time.Since(start)
	m.proc = nil
	switch {
	case killed:
		m.t.Errorf("harness: mailgate pid %d did not exit within %v of SIGTERM and was killed", pid, grace)
	case err != nil:
		m.t.Errorf("harness: mailgate pid %d did not exit cleanly on SIGTERM: %v", pid, err)
	}
	return took
}

// Kill ends the daemon hard (SIGKILL to its PID: no shutdown, no last
// write of its state, as in a crash or the OOM killer) and waits until it
// has exited. Restart starts it again.
func (m *MG) Kill() {
	m.t.Helper()
	if m.proc == nil {
		return
	}
	pid := m.proc.cmd.Process.Pid
	if err := m.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.t.Fatalf("harness: SIGKILL mailgate pid %d: %v", pid, err)
	}
	<-m.proc.done
	m.proc = nil
	m.t.Logf("harness: mailgate pid %d killed (SIGKILL)", pid)
}

// PID is the daemon's process id, 0 when it is not running.
func (m *MG) PID() int {
	if m.proc == nil {
		return 0
	}
	return m.proc.cmd.Process.Pid
}

// CLI runs `mailgate <args...> --config <file>` (flags after the
// subcommand words) with a 30 s timeout and returns what it printed. err
// is non-nil when it could not run or exited non-zero, except explain's
// status 3 (the attempt would be refused: an answer, not a failure).
func (m *MG) CLI(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.Bin, append(args, "--config", m.ConfigPath)...)
	cmd.Dir = m.Dir
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	err = cmd.Run()
	var exit *exec.ExitError
	if len(args) > 0 && args[0] == "explain" && errors.As(err, &exit) && exit.ExitCode() == 3 {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("mailgate %s: %w", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), err
}

// MustCLI is CLI that fails t (the calling test or subtest) when the
// command fails, and returns its stdout.
func (m *MG) MustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := m.CLI(args...)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	return out
}

// DecisionFlush is how long a decision line may stay in the daemon's
// buffer (100 ms, cmd/mailgate/decisions.go), with a margin.
const DecisionFlush = 150 * time.Millisecond

// DecisionLog returns everything the daemon wrote to stdout: with the
// default [log] decisions = "stdout", the decision lines. It first waits
// DecisionFlush, so that every line of what happened before the call is
// in it (the daemon buffers its decision lines).
func (m *MG) DecisionLog() string {
	time.Sleep(DecisionFlush)
	b, err := os.ReadFile(m.stdoutPath)
	if err != nil {
		m.t.Errorf("harness: %v", err)
	}
	return string(b)
}

// Stderr returns the daemon's diagnostics so far.
func (m *MG) Stderr() string {
	b, err := os.ReadFile(m.stderrPath)
	if err != nil {
		m.t.Errorf("harness: %v", err)
	}
	return string(b)
}

// LogLine is one line of mailgate's decision log split into its
// key=value fields: a verdict (decision=allow|deny|tarpit reason=... rule=...
// door=... service=... login=... ip=...) or a reported login result
// (auth=success|failure door=... ...).
type LogLine map[string]string

// ParseLog returns the key=value lines of a log, split into fields. Values
// may be bare or Go-quoted. Other lines are skipped.
func ParseLog(log string) []LogLine {
	var ls []LogLine
	for _, line := range strings.Split(log, "\n") {
		if l, ok := ParseLine(line); ok {
			ls = append(ls, l)
		}
	}
	return ls
}

// ParseLine splits `k=v k2="v 2"` into its fields; ok is false when the
// line is not such a list.
func ParseLine(line string) (l LogLine, ok bool) {
	l = LogLine{}
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \t\"") {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
			if s != "" && s[0] != ' ' && s[0] != '\t' {
				return nil, false
			}
		} else {
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		l[key] = val
		s = strings.TrimLeft(s, " \t")
	}
	return l, len(l) > 0
}

// Matches reports whether every field in want has that value in l.
func (l LogLine) Matches(want map[string]string) bool {
	for k, v := range want {
		if got, ok := l[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Find returns the log lines whose fields include all of want.
func Find(lines []LogLine, want map[string]string) []LogLine {
	var found []LogLine
	for _, l := range lines {
		if l.Matches(want) {
			found = append(found, l)
		}
	}
	return found
}

// WaitLogLine waits up to 5 s for a line of the decision log whose fields
// include all of want and returns it; it fails t (the calling test or
// subtest), showing the log, otherwise.
func (m *MG) WaitLogLine(t testing.TB, want map[string]string) LogLine {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := m.DecisionLog()
		if found := Find(ParseLog(log), want); len(found) > 0 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %v in mailgate's decision log:\n%s", want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
