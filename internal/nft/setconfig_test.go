package nft

import (
	"strings"
	"testing"
)

// SetConfig on a live firewall: the next Apply writes the new mode's
// rules and the new priority into the same table, and an invalid config
// changes nothing.
func TestSetConfig(t *testing.T) {
	fw, _ := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mode{Protected, Private, Autoban} {
		cfg := exampleConfig(m)
		cfg.Priority = -20
		if err := fw.SetConfig(cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Apply(t0, exampleState()); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		got, err := fw.Kernel()
		if err != nil {
			t.Fatal(err)
		}
		if want := Render(cfg, exampleState(), t0); got != want {
			t.Errorf("%s: Kernel differs from Render:\n%s", m, Diff(want, got))
		}
	}
	bad := exampleConfig(Autoban)
	bad.Mode = "wide-open"
	if err := fw.SetConfig(bad); err == nil {
		t.Fatal("an invalid mode was taken")
	}
	got, _ := fw.Kernel()
	if !strings.Contains(got, "priority filter - 20") {
		t.Errorf("after a refused SetConfig:\n%s", got)
	}
}
