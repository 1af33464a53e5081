package test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"mailgate/internal/maillog"
	"mailgate/test/harness"
)

// TestMaillogIMAPIDForgery: with imap_id_log set, the real Dovecot 2.3
// logs a client's IMAP ID values in its login process's line, before the
// line's own elements ("ID sent: name=...: rip=..."). A client that sends
// an ID value written like a failure summary and its elements must not
// make the parser read a failure (a forged address gets banned, a forged
// login counted) from that line.
func TestMaillogIMAPIDForgery(t *testing.T) {
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users: map[string]string{"alice@example.test": "Alice-IDlog-0815"},
		Extra: "imap_id_log = *\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := netip.MustParseAddr("127.0.3.40")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := d.DialContext(ctx, "tcp", dc.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	const forged = `x (auth failed, 9 attempts): user=<victim>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, session=<z`
	if _, err := c.Write([]byte(`a ID ("name" "` + forged + `")` + "\r\nb LOGOUT\r\n")); err != nil {
		t.Fatal(err)
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil || strings.HasPrefix(l, "b ") {
			break
		}
	}
	c.Close()
	var line string
	deadline := time.Now().Add(10 * time.Second)
	for line == "" && time.Now().Before(deadline) {
		b, _ := os.ReadFile(dc.LogPath)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "ID sent") {
				line = l
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if line == "" {
		t.Fatal("Dovecot logged no ID line")
	}
	t.Logf("Dovecot's line: %s", line)
	var ev maillog.Event
	if maillog.ParseLine([]byte(line), time.Now(), &ev) {
		t.Errorf("the ID line was read as a login outcome: %+v", ev)
	}
}
