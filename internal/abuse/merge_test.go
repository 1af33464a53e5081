package abuse

import (
	"net/netip"
	"testing"
	"time"
)

func TestMergeBan(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tr := New(DefaultConfig())
	auto := func(id int64, p string) Ban {
		return Ban{ID: id, Kind: BanAddr, Prefix: netip.MustParsePrefix(p), Reason: ReasonAddrFailures,
			Created: now, Expires: now.Add(5 * time.Minute), CreatedBy: CreatedByMailgate}
	}
	if _, _, ok, err := tr.MergeBan(auto(20, "192.0.2.1/32"), now); !ok || err != nil {
		t.Fatalf("first ban: %v %v", ok, err)
	}
	// The same target and reason under a smaller id replaces it.
	_, rep, ok, _ := tr.MergeBan(auto(10, "192.0.2.1/32"), now)
	if !ok || len(rep) != 1 || rep[0].ID != 20 {
		t.Fatalf("smaller copy: ok %v, replaced %+v", ok, rep)
	}
	// A larger one, the same id again, an ended one, no id: nothing.
	for _, b := range []Ban{auto(30, "192.0.2.1/32"), auto(10, "192.0.2.1/32"), auto(40, "192.0.2.9/32")} {
		if b.ID == 40 {
			b.Created, b.Expires = now.Add(-time.Hour), now.Add(-time.Minute)
		}
		if _, _, ok, err := tr.MergeBan(b, now); ok || err != nil {
			t.Errorf("ban %d merged (err %v)", b.ID, err)
		}
	}
	if _, _, _, err := tr.MergeBan(auto(0, "192.0.2.2/32"), now); err == nil {
		t.Error("a ban without id merged")
	}
	// A mapped address is the IPv4 one.
	if _, _, ok, _ := tr.MergeBan(auto(50, "::ffff:192.0.2.1/128"), now); ok {
		t.Error("the IPv4-mapped copy of ban 10 (larger id) merged")
	}
	if got := tr.Bans(now); len(got) != 1 || got[0].ID != 10 {
		t.Fatalf("held %+v, want only 10", got)
	}
	// LiftMerged: the id, and the target's copies made up to the lift.
	tr.AddBan(auto(60, "192.0.2.1/32"), now) // a copy under another reason path (AddBan keeps both)
	gone := tr.LiftMerged(10, Ban{Kind: BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32")}, now)
	if len(gone) != 2 || len(tr.Bans(now)) != 0 {
		t.Fatalf("lifted %+v, still held %+v", gone, tr.Bans(now))
	}
}

func TestSetIDSource(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tr := New(DefaultConfig())
	ids := []int64{500, 500, 0}
	tr.SetIDSource(func() int64 { id := ids[0]; ids = ids[1:]; return id })
	b1, _ := tr.AddBan(Ban{Kind: BanLogin, Login: "a@example.test", CreatedBy: "t"}, now)
	b2, _ := tr.AddBan(Ban{Kind: BanLogin, Login: "b@example.test", CreatedBy: "t"}, now) // 500 is taken
	b3, _ := tr.AddBan(Ban{Kind: BanLogin, Login: "c@example.test", CreatedBy: "t"}, now) // 0: local count
	if b1.ID != 500 || b2.ID != 501 || b3.ID != 502 {
		t.Fatalf("ids %d %d %d, want 500, then the local count 501, 502", b1.ID, b2.ID, b3.ID)
	}
}
