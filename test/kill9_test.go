package test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"mailgate/test/harness"
)

// TestKill9UnderLoad is the hardening issue's crash test: while mgbench
// drives the Dovecot door (allow and report, one failure in ten, so the
// brute-force rules ban addresses) and the CLI adds rules, bans and relay
// permits, the daemon is killed hard (SIGKILL by PID: no shutdown, no last
// write). After a restart, every change the CLI was told had succeeded is
// there, and so is every automatic ban that was older than the batch
// interval (2 s) when the daemon died.
func TestKill9UnderLoad(t *testing.T) {
	const key = "kill9-policy-key-7013"
	dir := harness.TempDir(t, "kill9-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, key, `
[relay]
enabled = true
hook_socket = ""
`))
	bench := exec.Command(harness.Mgbench(t), "dovecot", "--url", mg.DovecotURL(), "--api-key", key, "--report",
		"--concurrency", "4", "--duration", "60s", "--warmup", "0s", "--logins", "300", "--addresses", "40")
	bench.Dir = dir
	waitBench := harness.StartProcess(t, bench)

	// The CLI changes state as fast as it can until stop is closed; each
	// change it was told had succeeded is recorded.
	var (
		mu                   sync.Mutex
		rules, bans, permits []string // accounts, addresses, addresses
		cliErrs              int
		stop, stopped        = make(chan struct{}), make(chan struct{})
	)
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			account := fmt.Sprintf("kill9-%d@example.test", i)
			banIP := fmt.Sprintf("192.0.2.%d", i%250+1)
			if i >= 250 {
				banIP = fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)
			}
			permitIP := fmt.Sprintf("203.0.113.%d", i%250+1)
			if _, _, err := mg.CLI("rule", "add", "--account", account, "--allow", "--ip", "192.0.2.0/24", "--service", "imap"); err == nil {
				mu.Lock()
				rules = append(rules, account)
				mu.Unlock()
			} else {
				mu.Lock()
				cliErrs++
				mu.Unlock()
			}
			if _, _, err := mg.CLI("ban", "add", "--ip", banIP, "--for", "1h"); err == nil {
				mu.Lock()
				bans = append(bans, banIP)
				mu.Unlock()
			}
			if i < 250 {
				if _, _, err := mg.CLI("permit", "add", "--ip", permitIP, "--for", "1h"); err == nil {
					mu.Lock()
					permits = append(permits, permitIP)
					mu.Unlock()
				}
			}
		}
	}()

	// Automatic bans made under the load: the ones listed now are older
	// than the batch interval when the daemon is killed.
	time.Sleep(4 * time.Second)
	auto := map[int64]bfBan{}
	for id, b := range bfBansByID(t, mg) {
		if b.CreatedBy == "mailgate" {
			auto[id] = b
		}
	}
	time.Sleep(3 * time.Second) // > the 2 s batch interval, and load goes on
	mg.Kill()
	close(stop)
	<-stopped
	bench.Process.Kill() // our child, by its PID
	waitBench()          //nolint:errcheck // killed: its exit status says so
	if len(auto) == 0 {
		t.Fatalf("the load made no automatic ban to check; decision log:\n%.2000s", mg.DecisionLog())
	}
	mu.Lock()
	t.Logf("before the kill: %d automatic bans listed; the CLI added %d rules, %d bans, %d permits (%d rule adds failed)",
		len(auto), len(rules), len(bans), len(permits), cliErrs)
	mu.Unlock()

	mg.Restart()
	got := bfBansByID(t, mg)
	for id, want := range auto {
		if b, ok := got[id]; !ok || b.IP != want.IP || b.Account != want.Account {
			t.Errorf("automatic ban %d (%s%s, created %v) is lost after kill -9", id, want.IP, want.Account, want.Created)
		}
	}
	banned := map[string]bool{}
	for _, b := range got {
		if b.CreatedBy != "mailgate" {
			banned[b.IP] = true
		}
	}
	for _, ip := range bans {
		if !banned[ip] {
			t.Errorf("manual ban of %s, added with success, is lost after kill -9", ip)
		}
	}
	var rl []struct {
		Account string `json:"account"`
	}
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "rule", "list", "--json")), &rl); err != nil {
		t.Fatal(err)
	}
	haveRule := map[string]bool{}
	for _, r := range rl {
		haveRule[r.Account] = true
	}
	for _, a := range rules {
		if !haveRule[a] {
			t.Errorf("rule for %s, added with success, is lost after kill -9", a)
		}
	}
	var pl []struct {
		IP string `json:"ip"`
	}
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "permit", "list", "--json")), &pl); err != nil {
		t.Fatal(err)
	}
	havePermit := map[string]bool{}
	for _, p := range pl {
		havePermit[p.IP] = true
	}
	for _, ip := range permits {
		if !havePermit[ip] {
			t.Errorf("permit for %s, added with success, is lost after kill -9", ip)
		}
	}
}
