package test

import (
	"os"
	"strings"
	"testing"
)

// docs/firewall.md shows each mode's ruleset as mailgate writes it: the
// golden files internal/nft renders (go test ./internal/nft -update), so
// the page cannot drift from the code.
func TestFirewallDocRulesets(t *testing.T) {
	doc, err := os.ReadFile("../docs/firewall.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"public", "autoban", "protected", "private"} {
		b, err := os.ReadFile("../internal/nft/testdata/ruleset-" + mode + ".nft")
		if err != nil {
			t.Fatal(err)
		}
		want := string(b)
		if mode != "autoban" {
			i := strings.Index(want, "\tchain input {")
			if i < 0 {
				t.Fatalf("ruleset-%s.nft has no input chain", mode)
			}
			want = want[i:]
		}
		if !strings.Contains(string(doc), "```\n"+want+"```\n") {
			t.Errorf("docs/firewall.md does not show the %s ruleset of internal/nft/testdata/ruleset-%s.nft verbatim", mode, mode)
		}
	}
}
