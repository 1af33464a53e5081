package cluster

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParse: whatever a peer publishes, Parse returns an error or a
// message within the bounds that Encode writes back and Parse reads
// again; Apply never panics on it.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"v":1,"node":"a","t":1764936000000,"ev":[{"l":"u@example.test","a":"192.0.2.1","h":"00aa11bb22cc","svc":"imap","d":"dovecot"}]}`))
	f.Add([]byte(`{"v":1,"node":"b","t":1764936000000,"bans":[{"id":7,"k":"login","x":"u@example.test","r":"login_attack","c":1764936000,"e":1764936600,"by":"mailgate"}]}`))
	f.Add([]byte(`{"v":1,"node":"b","t":1764936000000,"unbans":[{"id":7,"k":"addr","x":"192.0.2.0/24","at":1764936000}]}`))
	f.Add([]byte(`{"v":1,"node":"c","t":1764936000000,"permits":[{"p":"192.0.2.5/32","e":1764939600,"by":"admin"}],"unpermits":["2001:db8::/64"]}`))
	f.Add([]byte(`{"v":1,"node":"c","t":1}`))
	f.Add([]byte(`{"v":2,"node":"c","t":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			n, _, _ := newTestNode(t, "self")
			n.Apply(b, t0) // must not panic, must change nothing
			if n.Status(t0).Received != 0 {
				t.Fatalf("%q does not parse (%v) but was applied", b, err)
			}
			return
		}
		if len(m.Events) > MaxEvents || len(m.Bans) > MaxBans || len(m.Unbans) > MaxUnbans {
			t.Fatalf("%q: over the bounds", b)
		}
		out, err := Encode(&m)
		if err != nil {
			t.Fatalf("%q parsed but does not encode: %v", b, err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("%q parsed, encoded as %q, which does not parse: %v", b, out, err)
		}
		n, _, _ := newTestNode(t, "self")
		n.Apply(b, t0.Add(time.Second))
	})
}

// FuzzParseBan: a ban read from Redis is refused, or is one the tracker
// holds and that goes back to the same wire form.
func FuzzParseBan(f *testing.F) {
	f.Add([]byte(`{"id":7,"k":"login","x":"u@example.test","r":"login_attack","c":1764936000,"e":1764936600,"by":"mailgate"}`))
	f.Add([]byte(`{"id":8,"k":"addr","x":"192.0.2.0/24","r":"manual","c":1764936000,"m":"why","by":"admin"}`))
	f.Add([]byte(`{"id":9,"k":"addr","x":"::ffff:192.0.2.1/128","r":"addr_failures","c":1764936000,"e":1764936300}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ban, err := ParseBan(b)
		if err != nil {
			return
		}
		w := FromBan(&ban)
		js, _ := jsonBan(&w)
		again, err := ParseBan([]byte(js))
		if err != nil {
			t.Fatalf("%q parsed, written back as %s, which does not parse: %v", b, js, err)
		}
		if again.ID != ban.ID || again.Target() != ban.Target() {
			t.Fatalf("%q: round trip %+v → %+v", b, ban, again)
		}
		n, tr, _ := newTestNode(t, "self")
		_ = n
		if _, _, _, err := tr.MergeBan(ban, t0); err != nil {
			t.Fatalf("%q parsed but the tracker refuses it: %v", b, err)
		}
	})
}

// FuzzParseBeat: a heartbeat read from Redis is refused or sane.
func FuzzParseBeat(f *testing.F) {
	f.Add([]byte(`{"node":"mx1","version":"1.4.0","started":1764936000,"beat":1764936000123}`))
	f.Add([]byte(`{"node":"","beat":1}`))
	f.Add([]byte(`{"node":"mx1","version":"1.4\u001b[2J\r","started":1,"beat":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseBeat(b)
		if err != nil {
			return
		}
		if !validNode(h.Node) || h.Beat <= 0 || !printable(h.Version, maxVersionLen) || bytes.Count(b, nil) > 1025 {
			t.Fatalf("%q: accepted %+v", b, h)
		}
	})
}
