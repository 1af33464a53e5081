package cluster

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"mailgate/internal/abuse"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

type recorder struct {
	events           []Event
	added, removed   []abuse.Ban
	permits          []Permit
	withdrawnPermits []netip.Prefix
	rcpts            []Rcpt
}

func newTestNode(t *testing.T, name string) (*Node, *abuse.Tracker, *recorder) {
	t.Helper()
	tr := abuse.New(abuse.DefaultConfig())
	rec := &recorder{}
	n := New(Options{Node: name, Prefix: "t:", Started: t0}, tr, Hooks{
		Event: func(ev Event, _ time.Time) { rec.events = append(rec.events, ev) },
		BansChanged: func(a, r []abuse.Ban, _ time.Time) {
			rec.added = append(rec.added, a...)
			rec.removed = append(rec.removed, r...)
		},
		Rcpts: func(rs []Rcpt, _ time.Time) { rec.rcpts = append(rec.rcpts, rs...) },
		Permits: func(a []Permit, r []netip.Prefix, _ time.Time) {
			rec.permits = append(rec.permits, a...)
			rec.withdrawnPermits = append(rec.withdrawnPermits, r...)
		},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.now = func() time.Time { return t0 }
	return n, tr, rec
}

func msg(t *testing.T, m Message) []byte {
	t.Helper()
	if m.V == 0 {
		m.V = version
	}
	if m.Sent == 0 {
		m.Sent = t0.UnixMilli()
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loginBan(id int64, login string, created time.Time) abuse.Ban {
	return abuse.Ban{ID: id, Kind: abuse.BanLogin, Login: login, Reason: abuse.ReasonLoginAttack,
		Created: created, Expires: created.Add(10 * time.Minute), CreatedBy: abuse.CreatedByMailgate}
}

func ids(bs []abuse.Ban) []int64 {
	out := []int64{}
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return out
}

// Two nodes that both ban a login for the same failures converge on the
// ban with the smaller id, whichever order they hear of it.
func TestApplyDuplicateBansConverge(t *testing.T) {
	n, tr, rec := newTestNode(t, "a")
	if _, err := tr.AddBan(loginBan(200, "x@example.test", t0), t0); err != nil {
		t.Fatal(err)
	}
	n.Apply(msg(t, Message{Node: "b", Bans: []Ban{FromBan(new(loginBan(100, "x@example.test", t0)))}}), t0.Add(time.Second))
	if got := ids(tr.Bans(t0.Add(time.Second))); len(got) != 1 || got[0] != 100 {
		t.Fatalf("bans held %v, want only 100", got)
	}
	if len(rec.added) != 1 || rec.added[0].ID != 100 || len(rec.removed) != 1 || rec.removed[0].ID != 200 {
		t.Fatalf("hooks told added %v, removed %v; want 100 added, 200 removed", ids(rec.added), ids(rec.removed))
	}
	// A copy with a larger id is ignored.
	n.Apply(msg(t, Message{Node: "c", Bans: []Ban{FromBan(new(loginBan(300, "x@example.test", t0)))}}), t0.Add(2*time.Second))
	if got := ids(tr.Bans(t0.Add(2 * time.Second))); len(got) != 1 || got[0] != 100 {
		t.Fatalf("bans held %v after a larger copy, want only 100", got)
	}
	// A manual ban of the same target is never merged away.
	man := abuse.Ban{ID: 50, Kind: abuse.BanLogin, Login: "x@example.test", Reason: abuse.ReasonManual, Created: t0, CreatedBy: "admin"}
	n.Apply(msg(t, Message{Node: "c", Bans: []Ban{FromBan(&man)}}), t0.Add(3*time.Second))
	if got := ids(tr.Bans(t0.Add(3 * time.Second))); len(got) != 2 {
		t.Fatalf("bans held %v, want the automatic 100 and the manual 50", got)
	}
}

// A lifted ban stays lifted: a late copy of it (another node's message,
// or a resync) does not bring it back, and the lift also takes the same
// target's copies made before it, not a ban made after.
func TestApplyUnbanTombstone(t *testing.T) {
	n, tr, rec := newTestNode(t, "a")
	tr.AddBan(loginBan(7, "y@example.test", t0), t0)
	tr.AddBan(loginBan(9, "y@example.test", t0.Add(time.Second)), t0) // a copy under another id
	at := t0.Add(2 * time.Second)
	n.Apply(msg(t, Message{Node: "b", Unbans: []Unban{{ID: 7, Kind: "login", Target: "y@example.test", At: at.Unix()}}}), at)
	if got := tr.Bans(at); len(got) != 0 {
		t.Fatalf("bans held after the lift: %v", ids(got))
	}
	if len(rec.removed) != 2 {
		t.Fatalf("hooks told removed %v, want 7 and 9", ids(rec.removed))
	}
	// The lifted ban comes again (a node that had not heard yet).
	n.Apply(msg(t, Message{Node: "c", Bans: []Ban{FromBan(new(loginBan(7, "y@example.test", t0)))}}), at.Add(time.Second))
	if got := tr.Bans(at.Add(time.Second)); len(got) != 0 {
		t.Fatalf("a lifted ban came back: %v", ids(got))
	}
	// A new ban of the same login after the lift holds.
	later := loginBan(12, "y@example.test", at.Add(5*time.Second))
	n.Apply(msg(t, Message{Node: "c", Bans: []Ban{FromBan(&later)}}), at.Add(6*time.Second))
	if got := ids(tr.Bans(at.Add(6 * time.Second))); len(got) != 1 || got[0] != 12 {
		t.Fatalf("bans held %v, want the new ban 12", got)
	}
}

func TestApplyIgnoresOwnBadAndEnded(t *testing.T) {
	n, tr, rec := newTestNode(t, "a")
	// Its own messages (it applied them when it made them).
	n.Apply(msg(t, Message{Node: "a", Events: []Event{{Addr: netip.MustParseAddr("192.0.2.1")}}}), t0)
	// Not a message; over the size bound; a bad ban inside a good message.
	n.Apply([]byte("{"), t0)
	n.Apply(make([]byte, MaxMessage+1), t0)
	bad := Ban{ID: 3, Kind: "addr", Target: "0.0.0.0/0", Reason: "manual", Created: t0.Unix()}
	n.Apply(msg(t, Message{Node: "b", Events: []Event{{Addr: netip.MustParseAddr("192.0.2.1")}}, Bans: []Ban{bad}}), t0)
	// A ban that has ended.
	old := loginBan(4, "z@example.test", t0.Add(-time.Hour))
	n.Apply(msg(t, Message{Node: "b", Bans: []Ban{FromBan(&old)}}), t0)
	if len(rec.events) != 0 || len(tr.Bans(t0)) != 0 || len(rec.added) != 0 {
		t.Fatalf("applied: events %v, bans %v", rec.events, ids(tr.Bans(t0)))
	}
	if s := n.Status(t0); s.Rejected != 3 || s.Received != 1 {
		t.Errorf("rejected %d, received %d; want 3 and 1", s.Rejected, s.Received)
	}
}

// Events reach the hook; the sender's lag is the arrival time minus its
// send time.
func TestApplyEventsAndLag(t *testing.T) {
	n, _, rec := newTestNode(t, "a")
	ev := Event{Login: "u@example.test", Addr: netip.MustParseAddr("::ffff:192.0.2.9"), PwHash: Digest("abcd"), Door: "dovecot", Service: "imap"}
	n.Apply(msg(t, Message{Node: "b", Sent: t0.UnixMilli(), Events: []Event{ev}}), t0.Add(40*time.Millisecond))
	if len(rec.events) != 1 || rec.events[0].Addr != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("events %+v, want one, its address unmapped", rec.events)
	}
	var b *NodeStatus
	for _, ns := range n.Status(t0).Nodes {
		if ns.Name == "b" {
			b = &ns
		}
	}
	if b == nil || b.Lag != 40*time.Millisecond {
		t.Fatalf("node b in status: %+v, want lag 40ms", b)
	}
	// Without heartbeats, it leaves the list a minute after its last message.
	for _, ns := range n.Status(t0.Add(2 * time.Minute)).Nodes {
		if ns.Name == "b" {
			t.Errorf("node b still listed two minutes after its last message: %+v", ns)
		}
	}
}

func TestApplyPermits(t *testing.T) {
	n, _, rec := newTestNode(t, "a")
	n.Apply(msg(t, Message{Node: "b", Permits: []Permit{{Prefix: "192.0.2.5/32", Expires: t0.Add(time.Hour).Unix(), By: "admin"}},
		Unpermits: []string{"192.0.2.6/32"}}), t0)
	if len(rec.permits) != 1 || len(rec.withdrawnPermits) != 1 || rec.withdrawnPermits[0] != netip.MustParsePrefix("192.0.2.6/32") {
		t.Fatalf("permits %+v, withdrawn %v", rec.permits, rec.withdrawnPermits)
	}
}

// Without IDs reserved from Redis (down since start), new bans get IDs
// in the node's own range: above every shared ID, increasing, and
// different from another node's.
func TestIDsWithoutRedis(t *testing.T) {
	na, tra, _ := newTestNode(t, "node-a")
	nb, trb, _ := newTestNode(t, "node-b")
	_ = na
	_ = nb
	b1, _ := tra.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32"), CreatedBy: "t"}, t0)
	b2, _ := tra.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.2/32"), CreatedBy: "t"}, t0)
	b3, _ := trb.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32"), CreatedBy: "t"}, t0)
	if b1.ID < fallbackBase || b2.ID <= b1.ID || b3.ID == b1.ID || b3.ID == b2.ID || b2.ID >= 1<<53 {
		t.Fatalf("ids %d %d (node a), %d (node b)", b1.ID, b2.ID, b3.ID)
	}
	// With a reserved block, IDs come from it.
	na.mu.Lock()
	na.ids.next, na.ids.end = 1001, 1001+idBlock
	na.mu.Unlock()
	b4, _ := tra.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.3/32"), CreatedBy: "t"}, t0)
	if b4.ID != 1001 {
		t.Fatalf("id %d, want 1001 from the reserved block", b4.ID)
	}
}

// Lifting on this node leaves a tombstone that outlives the ban.
func TestLiftedTombstone(t *testing.T) {
	n, _, _ := newTestNode(t, "a")
	b := loginBan(5, "q@example.test", t0)
	n.Lifted([]abuse.Ban{b}, t0)
	n.mu.Lock()
	tb, ok := n.tombs[5]
	n.mu.Unlock()
	if !ok || !tb.until.After(b.Expires) {
		t.Fatalf("tombstone %+v (%v), want one past the ban's end %v", tb, ok, b.Expires)
	}
	n.expireTombs(tb.until)
	if n.tombstoned(5) {
		t.Error("tombstone kept past its end")
	}
}

func TestApplyRcpts(t *testing.T) {
	n, _, rec := newTestNode(t, "a")
	n.Apply(msg(t, Message{Node: "b", Rcpts: []Rcpt{{Login: "s@example.test", Instance: "4F2A1B"}, {Login: "s@example.test", Instance: "4F2A1B"}}}), t0)
	if len(rec.rcpts) != 2 || rec.rcpts[0].Instance != "4F2A1B" {
		t.Fatalf("recipients %+v", rec.rcpts)
	}
	n.Apply(msg(t, Message{Node: "b", Rcpts: []Rcpt{{Login: ""}}}), t0)
	if len(rec.rcpts) != 2 {
		t.Fatal("a recipient without a login was applied")
	}
}

// A heartbeat is printed by 'mailgate status': one whose version carries
// a terminal escape or a line break (whoever can write to Redis) is not
// read.
func TestParseBeatRefusesControlCharacters(t *testing.T) {
	for _, v := range []string{"1.4\x1b[2J", "1.4\r\nnode evil", "1.4\u009b31m"} {
		b, err := json.Marshal(Beat{Node: "mx1", Version: v, Started: 1, Beat: 1})
		if err != nil {
			t.Fatal(err)
		}
		if h, err := ParseBeat(b); err == nil {
			t.Errorf("version %q accepted: %+v", v, h)
		}
	}
	if _, err := ParseBeat([]byte(`{"node":"mx1","version":"1.4.0 (ünïcode)","started":1,"beat":1}`)); err != nil {
		t.Errorf("a printable version refused: %v", err)
	}
}

// The last error is printed by 'mailgate status': one line, no escape
// sequences, valid UTF-8 even when cut.
func TestOneLine(t *testing.T) {
	got := oneLine("ERR boom\r\n\x1b[2J" + strings.Repeat("é", 150))
	if strings.ContainsAny(got, "\r\n\x1b") || !utf8.ValidString(got) || len(got) > 200 {
		t.Errorf("oneLine: %q", got)
	}
	if got := oneLine("dial tcp: connection refused"); got != "dial tcp: connection refused" {
		t.Errorf("plain text changed: %q", got)
	}
}
