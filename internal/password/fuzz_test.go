package password

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzBreachedFile feeds any bytes to the file check and the search: no
// panic, no out-of-range read, and on a file Validate accepts whose
// lines all parse, a hash in it is found.
func FuzzBreachedFile(f *testing.F) {
	f.Add([]byte(strings.Repeat("A", 40)+":1\r\n"+strings.Repeat("B", 40)+":22\r\n"), strings.Repeat("B", 40))
	f.Add([]byte(strings.Repeat("a", 40)+":1\n"), strings.Repeat("A", 40))
	f.Add([]byte("\n\n\r\n"), strings.Repeat("0", 40))
	f.Add([]byte(strings.Repeat("C", 32)+":5\r\n"), strings.Repeat("C", 40))
	f.Fuzz(func(t *testing.T, data []byte, probe string) {
		verr := Validate("fuzz", data)
		if len(probe) != hashLen {
			return
		}
		h := []byte(probe)
		upper(h)
		n, err := search(data, h)
		if verr != nil || err != nil {
			return
		}
		// Every line parses and the hashes increase: the probe is found
		// exactly when a line holds it.
		lines := bytes.Split(data[:textEnd(data)], []byte("\n"))
		prev := ""
		for _, l := range lines {
			l = bytes.TrimSuffix(l, []byte("\r"))
			if checkLine(l) != nil {
				return
			}
			cur := strings.ToUpper(string(l[:hashLen]))
			if cur <= prev {
				return
			}
			prev = cur
		}
		want := int64(0)
		for _, l := range lines {
			l = bytes.TrimSuffix(l, []byte("\r"))
			if strings.EqualFold(string(l[:hashLen]), probe) {
				want, _ = parseCount(l[hashLen+1:])
			}
		}
		if n != want {
			t.Fatalf("search(%q) = %d; want %d", probe, n, want)
		}
	})
}

// FuzzCheck runs the policy on any input: no panic, an error only for
// input over MaxLen, and every failure has a reason.
func FuzzCheck(f *testing.F) {
	f.Add("vK8#qm2Lp0zR", "alice@example.com")
	f.Add("alice", "alice")
	f.Add("\xff\xfe", "@")
	p := Default()
	f.Fuzz(func(t *testing.T, pw, login string) {
		r, err := p.Check(pw, login)
		if err != nil {
			if len(pw) <= MaxLen {
				t.Fatalf("error %v for %d bytes", err, len(pw))
			}
			return
		}
		if r.OK != (len(r.Reasons) == 0) {
			t.Fatalf("ok %v with reasons %v", r.OK, r.Reasons)
		}
	})
}
