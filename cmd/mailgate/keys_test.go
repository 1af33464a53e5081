package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"mailgate/internal/config"
)

func TestDovecotKey(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(dir, "mailgate.db")
	keyPath := filepath.Join(dir, "dovecot-api-key")

	var check bytes.Buffer
	if err := checkDovecotKey(&cfg, &check); err != nil || !strings.Contains(check.String(), "no key file yet: serve creates "+keyPath) {
		t.Errorf("config check before the first start: %v\n%s", err, check.String())
	}
	if _, err := os.Stat(keyPath); err == nil {
		t.Fatal("config check created the key file")
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	key, err := dovecotKey(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "auth_policy_server_api_header = <" + keyPath; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "created a random API key") {
		t.Errorf("the log does not tell the Dovecot line %q:\n%s", want, logs.String())
	}
	if strings.Contains(logs.String(), key) {
		t.Error("the log shows the key")
	}
	again, err := dovecotKey(&cfg, log)
	if err != nil || again != key {
		t.Errorf("second start: %q %v, want %q", again, err, key)
	}
	check.Reset()
	if err := checkDovecotKey(&cfg, &check); err != nil || !strings.Contains(check.String(), "API key in "+keyPath) {
		t.Errorf("config check after the first start: %v\n%s", err, check.String())
	}

	os.WriteFile(keyPath, []byte(key+"\n"), 0o600)
	if _, err := dovecotKey(&cfg, log); err == nil || !strings.Contains(err.Error(), "dovecot.api_key_file: key file "+keyPath+": ends with a line break") {
		t.Errorf("a key with a line break: %v", err)
	}
	if err := checkDovecotKey(&cfg, &check); err == nil || !strings.Contains(err.Error(), "ends with a line break") {
		t.Errorf("config check, a key with a line break: %v", err)
	}

	cfg.Dovecot.APIKey = "0123456789abcdef0123"
	if k, err := dovecotKey(&cfg, log); err != nil || k != cfg.Dovecot.APIKey {
		t.Errorf("api_key set: %q %v", k, err)
	}
}

func TestAdminServerTimeouts(t *testing.T) {
	srv := newAdminServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("admin server: read header %v, read %v, idle %v; want all bounded", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
	}
}

// TestListenUnixMode: the socket ends with its mode whatever the umask,
// and the umask is restored.
func TestListenUnixMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := listenUnixMode(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v %v, want 0660", fi.Mode().Perm(), err)
	}
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("umask left at %03o, want the caller's 000", now)
	}
}

func TestListenNginxUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nginx.sock")
	gid := os.Getgid()
	n := config.Nginx{Listen: path, SocketGroup: "65534"}
	if os.Geteuid() != 0 {
		n.SocketGroup = ""
	}
	ln, err := listenNginx(&n)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n.SocketGroup != "" {
		gid = 65534
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || int(st.Gid) != gid {
		t.Errorf("mode %04o gid %d, want 0660 and gid %d", fi.Mode().Perm(), st.Gid, gid)
	}
	if _, err := listenNginx(&config.Nginx{Listen: filepath.Join(t.TempDir(), "x.sock"), SocketGroup: "no-such-group-xyz"}); err == nil || !strings.Contains(err.Error(), "nginx.socket_group") {
		t.Errorf("unknown group: %v", err)
	}
}

// TestWarnSocketDir: a 0666 socket in a directory everyone may enter is
// warned about; in one closed to others (Postfix's private/) it is not.
func TestWarnSocketDir(t *testing.T) {
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o755, true}, {0o751, true}, {0o700, false}, {0o750, false}} {
		dir := filepath.Join(t.TempDir(), "private")
		if err := os.Mkdir(dir, c.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, c.mode)
		var logs bytes.Buffer
		warnSocketDir(slog.New(slog.NewTextHandler(&logs, nil)), "postfix.socket", filepath.Join(dir, "mailgate"))
		if got := strings.Contains(logs.String(), "every local user can use it"); got != c.warn {
			t.Errorf("directory %04o: warned %v, want %v\n%s", c.mode, got, c.warn, logs.String())
		}
	}
}
