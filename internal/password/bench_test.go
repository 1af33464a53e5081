package password

import (
	"testing"
)

// BenchmarkCheckBreached is a whole policy check (length, classes, login,
// breached list of a million hashes, zxcvbn) of a typical 12-character
// password that passes every rule: the slowest path, as no rule stops it.
func BenchmarkCheckBreached(b *testing.B) {
	l := makeHashes(1_000_000, 12)
	bl, err := OpenBreached(l.write(b, b.TempDir(), "list.txt", "\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	p := Default()
	p.Breached = bl
	b.ReportAllocs()
	for b.Loop() {
		if p.Weak("vK8#qm2Lp0zR", "alice@example.com") {
			b.Fatal("weak")
		}
	}
}

// BenchmarkBreachedLookup is the breached-list search alone.
func BenchmarkBreachedLookup(b *testing.B) {
	l := makeHashes(1_000_000, 12)
	bl, err := OpenBreached(l.write(b, b.TempDir(), "list.txt", "\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if n, _ := bl.CountHash(l.hashes[i%len(l.hashes)]); n == 0 {
			b.Fatal("miss")
		}
		i += 7919
	}
}
