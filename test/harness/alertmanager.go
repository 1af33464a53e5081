package harness

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// AlertmanagerPackages maps the Alertmanager binary to its Debian package.
var AlertmanagerPackages = map[string]string{
	"/usr/bin/prometheus-alertmanager": "prometheus-alertmanager",
}

// Alertmanager is a running Prometheus Alertmanager on a loopback port,
// with clustering off and one receiver that sends nowhere: the tests read
// the alerts back with GET /api/v2/alerts.
type Alertmanager struct {
	URL string // http://127.0.0.1:port

	dir  string
	proc *process
}

// StartAlertmanager installs Alertmanager if missing, starts it in the
// foreground with its config and storage in a temp dir (the Debian
// package's service is not used), waits until GET /-/ready answers 200,
// and stops it by PID when the test ends (its output is shown if the test
// failed).
func StartAlertmanager(t testing.TB) *Alertmanager {
	t.Helper()
	Require(t, AlertmanagerPackages)
	dir := TempDir(t, "am-")
	a := &Alertmanager{dir: dir, URL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))}
	conf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(conf, []byte("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	logPath := filepath.Join(dir, "alertmanager.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer out.Close()
	cmd := exec.Command("/usr/bin/prometheus-alertmanager",
		"--config.file="+conf,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+a.URL[len("http://"):],
		"--cluster.listen-address=", // no gossip port
	)
	cmd.Stdout, cmd.Stderr = out, out
	a.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start alertmanager: %v", err)
	}
	t.Cleanup(func() {
		if err, killed := a.proc.stop(5 * time.Second); killed {
			t.Logf("harness: alertmanager had to be killed (%v)", err)
		}
		if t.Failed() {
			t.Logf("harness: alertmanager log:\n%s", readFile(logPath))
		}
	})
	c := &http.Client{Timeout: time.Second}
	if err := waitFor(20*time.Second, a.proc.done, func() error {
		resp, err := c.Get(a.URL + "/-/ready")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatalf("harness: alertmanager did not come up: %v\n%s", err, readFile(logPath))
	}
	return a
}

// Alerts returns GET /api/v2/alerts, the alerts Alertmanager holds, as
// JSON.
func (a *Alertmanager) Alerts(t testing.TB) []byte {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(a.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatalf("harness: alertmanager: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("harness: GET /api/v2/alerts: %s %v\n%s", resp.Status, err, b)
	}
	return b
}
