package test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/notify"
	"mailgate/test/harness"
)

// notifyDocPackages are the programs docs/notifications.md's examples run.
var notifyDocPackages = map[string]string{
	"/usr/bin/python3": "python3",
	"/usr/bin/openssl": "openssl",
}

// docBlock returns the fenced block of kind lang in doc that contains
// marker.
func docBlock(t *testing.T, doc, lang, marker string) string {
	t.Helper()
	for _, part := range strings.Split(doc, "```"+lang+"\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if strings.Contains(block, marker) {
			return block
		}
	}
	t.Fatalf("docs/notifications.md has no ```%s block with %q", lang, marker)
	return ""
}

// TestNotifyDocsVerifiers runs the signature checks docs/notifications.md
// gives users against what mailgate sends: the Python receiver takes a
// signed webhook and refuses one signed with another key, and the shell
// lines accept mailgate's signature and refuse a changed body.
func TestNotifyDocsVerifiers(t *testing.T) {
	harness.Require(t, notifyDocPackages)
	b, err := os.ReadFile("../docs/notifications.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	dir := harness.TempDir(t, "notify-docs-")
	const key = "docs-webhook-key-0123456789abcdef"
	keyFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("python receiver", func(t *testing.T) {
		script := filepath.Join(dir, "mailgate-webhook.py")
		if err := os.WriteFile(script, []byte(docBlock(t, doc, "python", "def verify")), 0o755); err != nil {
			t.Fatal(err)
		}
		port := harness.FreePort(t)
		cmd := exec.Command("/usr/bin/python3", script)
		cmd.Env = append(os.Environ(), "MAILGATE_KEY_FILE="+keyFile, "PORT="+strconv.Itoa(port))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // our child, by its PID
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the receiver does not listen: %v\n%s", err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond) // polling another process's port
		}
		url := "http://" + addr + "/"
		at := time.Now()
		e := notify.Event{Kind: notify.LoginBanned, Time: at, Login: "alice@example.com", Addr: netip.MustParseAddr("203.0.113.9")}
		wrong := &notify.HTTPTarget{TargetName: "wrong", Kind: notify.Webhook, URL: url, Secret: []byte("another-key-0123456789"), Timeout: 5 * time.Second}
		if err := wrong.Deliver(context.Background(), &e); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("a webhook signed with another key: %v, want 401", err)
		}
		right := &notify.HTTPTarget{TargetName: "right", Kind: notify.Webhook, URL: url, Secret: []byte(key), Timeout: 5 * time.Second}
		if err := right.Deliver(context.Background(), &e); err != nil {
			t.Fatalf("the documented receiver refused mailgate's webhook: %v\n%s", err, stderr.String())
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "login_banned "+e.Title()+"\n" {
			t.Errorf("the receiver printed %q (%v)", line, err)
		}
	})

	t.Run("shell check", func(t *testing.T) {
		lines := docBlock(t, doc, "sh", "openssl dgst")
		lines = strings.ReplaceAll(lines, "/etc/mailgate/webhook.key", keyFile)
		e := notify.Event{Kind: notify.SendLimit, Time: time.Now(), Login: "bob@example.com", Detail: "messages_per_hour 100"}
		h := &notify.HTTPTarget{Kind: notify.Webhook}
		body, err := h.Body(&e)
		if err != nil {
			t.Fatal(err)
		}
		ts := time.Now().Unix()
		sig := notify.Sign([]byte(key), ts, body)
		run := func(body []byte) string {
			if err := os.WriteFile(filepath.Join(dir, "body.json"), body, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/bin/sh", "-c", lines)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "ts="+strconv.FormatInt(ts, 10), "sig="+sig)
			out, _ := cmd.CombinedOutput()
			return string(out)
		}
		if got := run(body); got != "signature OK\n" {
			t.Errorf("mailgate's signature: the documented check printed %q", got)
		}
		if got := run(append(body, ' ')); strings.Contains(got, "signature OK") {
			t.Errorf("a changed body: the documented check printed %q", got)
		}
	})
}
