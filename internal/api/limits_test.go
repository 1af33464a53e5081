package api

import (
	"context"
	"testing"
	"time"

	"mailgate/internal/sendlimit"
)

// The limits list shows each sender's counts against its limits, over
// limit first, with the refusals.
func TestLimits(t *testing.T) {
	ctx := context.Background()
	cfg := sendlimit.DefaultConfig()
	cfg.Default = sendlimit.Limits{MessagesPerHour: 2, RecipientsPerDay: 100}
	cfg.Accounts = map[string]sendlimit.Limits{"@bulk.test": {}}
	lim := sendlimit.New(cfg)
	f := startRelay(t, nil, lim)
	at := f.now.Add(-10 * time.Minute)
	for i, inst := range []string{"m1", "m1", "m2", "m3"} {
		e := lim.Rcpt("spammer@x.test", inst, at.Add(time.Duration(i)*time.Second))
		if (i < 3) != e.OK() {
			t.Fatalf("rcpt %d: %+v", i, e)
		}
	}
	lim.Rcpt("news@bulk.test", "n1", at)
	us, err := f.client.Limits(ctx)
	if err != nil || len(us) != 2 {
		t.Fatalf("limits: %+v %v", us, err)
	}
	s := us[0]
	if s.Login != "spammer@x.test" || s.MessagesHour != 2 || s.RecipientsHour != 3 || s.RecipientsDay != 3 ||
		s.Limits != (LimitsJSON{MessagesPerHour: 2, RecipientsPerDay: 100}) ||
		len(s.Over) != 1 || s.Over[0] != "messages_per_hour" || s.Refused != 1 ||
		s.LastRefused == nil || !s.LastRefused.Equal(at.Add(3*time.Second)) {
		t.Errorf("over-limit sender: %+v", s)
	}
	b := us[1]
	if b.Login != "news@bulk.test" || b.Limits != (LimitsJSON{}) || b.Over == nil || len(b.Over) != 0 || b.LastRefused != nil || b.MessagesDay != 1 {
		t.Errorf("unlimited sender: %+v", b)
	}
}
