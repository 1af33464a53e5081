package password

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func codes(r Result) []Code {
	var cs []Code
	for _, x := range r.Reasons {
		cs = append(cs, x.Code)
	}
	return cs
}

// TestPolicyRules: one row per rule, each failing exactly its rule, and
// passwords that pass.
func TestPolicyRules(t *testing.T) {
	dir := t.TempDir()
	l := makeHashes(2000, 5, sha1Hex("Kx7-qWv9-Tr2m"))
	b, err := OpenBreached(l.write(t, dir, "list.txt", "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	seed := Default()
	nist := Policy{MinLength: 15, MinClasses: 0, MinScore: DefaultMinScore}
	classesOnly := Policy{MinLength: 12, MinClasses: 3}
	withList := Default()
	withList.Breached = b
	for _, tc := range []struct {
		name   string
		p      Policy
		pw     string
		login  string
		want   []Code
		minLen int
	}{
		{"strong", seed, "vK8#qm2Lp0zR", "alice@example.com", nil, 0},
		{"short", seed, "vK8#qm2Lp0", "", []Code{CodeTooShort}, 0},
		{"short-runes", classesOnly, "äöüÄÖÜ1234!", "", []Code{CodeTooShort}, 0},
		{"two-classes", classesOnly, "vkqmslpxzrtw12", "", []Code{CodeTooFewClasses}, 0},
		{"three-classes", classesOnly, "vkqmslpxzrtW12", "", nil, 0},
		{"nist-length-only-passes", nist, "purple tigers juggle quietly", "", nil, 0},
		{"nist-short", nist, "Ab1!xY9#zQ2", "", []Code{CodeTooShort}, 0},
		{"nist-common", nist, "passwordpassword", "", []Code{CodeGuessable}, 0},
		{"seed-classes-but-guessable", seed, "Password1234!", "", []Code{CodeGuessable}, 0},
		{"keyboard", seed, "Qwertyuiop1!", "", []Code{CodeGuessable}, 0},
		{"login", seed, "xAlice#9274Qz", "alice@example.com", []Code{CodeContainsLogin}, 0},
		{"domain", seed, "Qz9#example.com", "alice@example.com", []Code{CodeContainsDomain, CodeGuessable}, 0},
		{"domain-label", seed, "Qz9#Example!7vW", "alice@example.com", []Code{CodeContainsDomain}, 0},
		{"short-local-ignored", seed, "vK8#al2Lp0zR", "al@example.com", nil, 0},
		{"breached", withList, "Kx7-qWv9-Tr2m", "", []Code{CodeBreached}, 0},
		{"not-breached", withList, "vK8#qm2Lp0zR", "", nil, 0},
		{"not-utf8", classesOnly, "vK8#qm2Lp0zR\xff", "", []Code{CodeNotUTF8}, 0},
		{"every-reason", withList, "alice", "alice@example.com", []Code{CodeTooShort, CodeTooFewClasses, CodeContainsLogin, CodeGuessable}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.p.Check(tc.pw, tc.login)
			if err != nil {
				t.Fatal(err)
			}
			if got := codes(r); !slices.Equal(got, tc.want) || r.OK != (len(tc.want) == 0) {
				t.Fatalf("Check(%q) = ok %v %v %+v; want %v", tc.pw, r.OK, got, r.Reasons, tc.want)
			}
			for _, x := range r.Reasons {
				if x.Text == "" || strings.Contains(x.Text, tc.pw) {
					t.Errorf("reason %s: text %q empty or quoting the password", x.Code, x.Text)
				}
			}
			if w := tc.p.Weak(tc.pw, tc.login); w != !r.OK {
				t.Errorf("Weak = %v; Check ok = %v", w, r.OK)
			}
			if tc.p.MinScore > 0 && (r.Score < 0 || r.Score > 4) {
				t.Errorf("score %d", r.Score)
			}
		})
	}
}

func TestTooLong(t *testing.T) {
	p := Default()
	if _, err := p.Check(strings.Repeat("a", MaxLen+1), ""); !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v", err)
	}
	if !p.Weak(strings.Repeat("a", MaxLen+1), "") {
		t.Fatal("too long not weak")
	}
	// MaxLen itself is checked (and, being one repeated letter, fails).
	r, err := p.Check(strings.Repeat("a", MaxLen), "")
	if err != nil || r.OK {
		t.Fatalf("%v %v", r, err)
	}
}

func TestClasses(t *testing.T) {
	for pw, want := range map[string]int{"": 0, "abc": 1, "aB": 2, "aB3": 3, "aB3 ": 4, "ß1": 2, "Ä!": 2} {
		if got := Classes(pw); got != want {
			t.Errorf("Classes(%q) = %d; want %d", pw, got, want)
		}
	}
}

// TestBreachedClosedFailsClosed: a list that cannot be searched makes
// the check fail with its own reason, never pass silently.
func TestBreachedClosedFailsClosed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "l")
	os.WriteFile(p, []byte(strings.Repeat("A", 40)+":1\n"), 0o600)
	b, err := OpenBreached(p)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	pol := Default()
	pol.Breached = b
	r, _ := pol.Check("vK8#qm2Lp0zR", "")
	if r.OK || !slices.Contains(codes(r), CodeBreachedError) {
		t.Fatalf("%+v", r)
	}
	// At login the broken list is skipped: it must not flag everyone.
	if pol.Weak("vK8#qm2Lp0zR", "") {
		t.Fatal("Weak: a good password flagged because the list cannot be read")
	}
	if !pol.Weak("short", "") {
		t.Fatal("Weak: the other rules still apply")
	}
}
