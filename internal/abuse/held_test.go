package abuse

import (
	"net/netip"
	"testing"
	"time"
)

func TestHeld(t *testing.T) {
	tr := New(DefaultConfig())
	now := time.Unix(1_700_000_000, 0)
	b, err := tr.AddBan(Ban{Kind: BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Expires: now.Add(time.Minute)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := tr.Held(b.ID, now); !ok || got.ID != b.ID {
		t.Fatalf("Held(%d) = %+v, %t; want the ban", b.ID, got, ok)
	}
	if _, ok := tr.Held(b.ID, now.Add(time.Minute)); ok {
		t.Error("an ended ban is still held")
	}
	tr.RemoveBan(b.ID)
	if _, ok := tr.Held(b.ID, now); ok {
		t.Error("a lifted ban is still held")
	}
}
