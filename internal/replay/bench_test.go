package replay

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

var eventsOut = flag.String("events-out", "", "TestWriteBenchEvents writes -events-n events to this `FILE`")
var eventsN = flag.Int("events-n", 1_000_000, "how many events TestWriteBenchEvents writes")

// writeBenchEvents writes n events from a fixed seed: a day of a mail
// server's logins, a twentieth of a second apart on average: 2,000 users
// checking mail from their own addresses (a typo now and then), and
// attackers from 20,000 addresses guessing 5,000 logins, about half of
// all attempts. The same n and seed give the same bytes.
func writeBenchEvents(w io.Writer, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0xbe7c4))
	bw := bufio.NewWriterSize(w, 1<<16)
	t := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var line []byte
	for range n {
		t = t.Add(time.Duration(r.IntN(100)) * time.Millisecond)
		var login, addr, pwhash, result, actor string
		if r.IntN(2) == 0 {
			u := r.IntN(2000)
			login = fmt.Sprintf("user%04d@example.com", u)
			addr = fmt.Sprintf("100.64.%d.%d", u/250, 1+u%250)
			result, actor = "success", "user"
			if r.IntN(50) == 0 {
				result, pwhash = "failure", fmt.Sprintf("%08x", r.Uint32())
			}
		} else {
			a := r.IntN(20000)
			login = fmt.Sprintf("user%04d@example.com", r.IntN(5000))
			addr = fmt.Sprintf("198.18.%d.%d", a/250, 1+a%250)
			pwhash, result, actor = fmt.Sprintf("%08x", r.Uint32()), "failure", "attacker"
		}
		line = append(line[:0], `{"time":"`...)
		line = t.AppendFormat(line, time.RFC3339Nano)
		line = fmt.Appendf(line, `","service":"imap","login":"%s","address":"%s","pwhash":"%s","result":"%s","actor":"%s"}`+"\n",
			login, addr, pwhash, result, actor)
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// TestWriteBenchEvents writes the benchmark's events file for the
// command-line measurement in docs/performance.md:
//
//	go test ./internal/replay -run TestWriteBenchEvents -events-out /tmp/events.jsonl
func TestWriteBenchEvents(t *testing.T) {
	if *eventsOut == "" {
		t.Skip("-events-out not set")
	}
	f, err := os.Create(*eventsOut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeBenchEvents(f, *eventsN, 1); err != nil {
		t.Fatal(err)
	}
}

// newSetup is the engine with the default thresholds and relay permits
// on, as the daemon builds it from the default config.
func newSetup() Setup {
	tr := abuse.New(abuse.DefaultConfig())
	e := policy.New(rules.NewIndex(), nil).WithAbuse(tr, true, time.Minute, 5*time.Second)
	return Setup{Engine: e, Tracker: tr, Permits: relay.New(relay.DefaultConfig())}
}

// BenchmarkRun replays events (parse, decide, report) through the real
// engine: ns/op is the cost of one event.
func BenchmarkRun(b *testing.B) {
	var buf bytes.Buffer
	if err := writeBenchEvents(&buf, 1_000_000, 1); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)) / 1_000_000)
	b.ResetTimer()
	done := 0
	for done < b.N {
		// Each round replays up to the whole file through a fresh engine.
		n := min(b.N-done, 1_000_000)
		src := &limited{src: NewEventsReader(bytes.NewReader(data), "bench"), n: n}
		if _, err := Run(context.Background(), newSetup(), Options{}, src); err != nil {
			b.Fatal(err)
		}
		done += n
	}
}

// BenchmarkParseEvent is the parser alone.
func BenchmarkParseEvent(b *testing.B) {
	line := []byte(`{"time":"2026-12-01T08:00:00.123Z","service":"imap","login":"user0042@example.com","address":"198.18.3.7","pwhash":"a1b2c3d4","result":"failure","actor":"attacker"}`)
	var ev Event
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseEvent(line, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

type limited struct {
	src Source
	n   int
}

func (l *limited) Next(ev *Event) (bool, error) {
	if l.n == 0 {
		return false, nil
	}
	l.n--
	return l.src.Next(ev)
}
