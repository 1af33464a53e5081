package api

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/abuse"
)

func TestStatusAndAttack(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	// Before WithBruteForce: the status has no tracker part, attack is off.
	s, err := f.client.Status(ctx)
	if err != nil || s.Version != "test" || s.BruteForce != nil {
		t.Fatalf("status: %+v %v", s, err)
	}

	cfg := abuse.DefaultConfig()
	cfg.SurgeEnabled = true
	tr := abuse.New(cfg)
	var ended []string
	f.srv.WithBruteForce(tr, func(_ time.Time, actor string) { ended = append(ended, actor) })
	now := time.Now()
	for i := range 40 {
		tr.Record(abuse.Event{Login: fmt.Sprintf("u%d@x.test", i), Addr: netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i)), PwHash: "0abc"}, now)
	}
	tr.Surge(now)

	s, err = f.client.Status(ctx)
	if err != nil || s.BruteForce == nil {
		t.Fatalf("status: %+v %v", s, err)
	}
	bf := s.BruteForce
	if bf.Addresses != 40 || bf.Logins != 40 || !bf.UnderAttack.On || bf.UnderAttack.Failures != 40 || bf.UnderAttack.Since == nil {
		t.Errorf("status: %+v", bf)
	}
	rules := map[string]WindowJSON{}
	for _, w := range bf.Rules {
		rules[w.Rule] = w
	}
	if w := rules["login_day"]; w.Failures != 50 || w.WindowSeconds != 86400 || w.BanSeconds != 86400 {
		t.Errorf("login_day: %+v (rules %+v)", w, bf.Rules)
	}
	if _, ok := rules["spray"]; ok {
		t.Error("spraying is off, but listed")
	}

	a, err := f.client.EndAttack(ctx)
	if err != nil || !a.Ended || a.On {
		t.Errorf("attack end: %+v %v", a, err)
	}
	if len(ended) != 1 || ended[0] == "" {
		t.Errorf("onEnd calls: %q", ended)
	}
	if a, err := f.client.Attack(ctx); err != nil || a.On || !a.Enabled {
		t.Errorf("attack after end: %+v %v", a, err)
	}
}
