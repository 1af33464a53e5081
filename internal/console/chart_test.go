package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The chart counts the last hour's verdicts per door and minute: allowed
// and refused (deny, tarpit); auth results, older lines and other doors'
// minutes stay out.
func TestPerMinute(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 30, 20, 0, time.UTC)
	var b strings.Builder
	line := func(at time.Time, rest string) {
		fmt.Fprintf(&b, "time=%s %s\n", at.Format("2006-01-02T15:04:05.000Z"), rest)
	}
	line(now.Add(-2*time.Hour), "decision=deny reason=dnsbl rule=- door=dovecot service=imap login=a ip=192.0.2.1")
	for i := range 5 {
		line(now.Add(-10*time.Minute).Add(time.Duration(i)*time.Second), "decision=allow reason=default rule=- door=dovecot service=imap login=a ip=192.0.2.1")
	}
	line(now.Add(-10*time.Minute), "auth=failure door=dovecot service=imap login=a ip=192.0.2.1")
	line(now.Add(-9*time.Minute), "decision=tarpit reason=stale_password rule=- door=dovecot service=imap login=a ip=192.0.2.1")
	line(now.Add(-9*time.Minute), "decision=deny reason=banned_address rule=- door=dovecot service=imap login=a ip=192.0.2.1")
	line(now, "decision=deny reason=send_limit rule=- door=postfix service=smtp login=a ip=192.0.2.1")
	p := filepath.Join(t.TempDir(), "d.log")
	os.WriteFile(p, []byte(b.String()), 0o600)
	charts, err := perMinute(context.Background(), Source{File: p}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 2 || charts[0].Door != "dovecot" || charts[1].Door != "postfix" {
		t.Fatalf("charts %+v", charts)
	}
	d := charts[0]
	if d.Allowed != 5 || d.Refused != 2 || d.Max != 5 || len(d.Bars) != chartMinutes {
		t.Fatalf("dovecot: %d allowed, %d refused, max %d, %d bars", d.Allowed, d.Refused, d.Max, len(d.Bars))
	}
	// 09:20 is bar 49 of the hour from 08:31 to 09:30.
	if bar := d.Bars[49]; bar.HA != chartH || bar.HR != 0 || !strings.HasPrefix(bar.Title, "09:20: 5 allowed, 0 refused") {
		t.Errorf("09:20: %+v", bar)
	}
	if bar := d.Bars[50]; bar.HA != 0 || bar.HR != 2*chartH/5 || bar.YR != chartH-bar.HR {
		t.Errorf("09:21: %+v", bar)
	}
	if pf := charts[1]; pf.Refused != 1 || pf.Bars[chartMinutes-1].HR != chartH {
		t.Errorf("postfix: %+v", pf)
	}
}
