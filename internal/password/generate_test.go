package password

import (
	"strings"
	"testing"
)

// TestGeneratePasses: generated passwords pass the policy that made
// them, many times, in both forms, and differ from each other.
func TestGeneratePasses(t *testing.T) {
	for _, p := range []Policy{Default(), {MinLength: 20, MinClasses: 4, MinScore: 4}, {MinLength: 15}} {
		g := NewGenerator(&p)
		seen := map[string]bool{}
		for i := range 100 {
			pw, err := g.Chars(0, "alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := p.Check(pw, "alice@example.com"); !r.OK || len(pw) < p.MinLength || Classes(pw) != 4 {
				t.Fatalf("chars %q: %+v", pw, r)
			}
			ph, err := g.Words(0, "alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := p.Check(ph, "alice@example.com"); !r.OK || strings.Count(ph, "-") < DefaultWords-1 {
				t.Fatalf("words %q: %+v", ph, r)
			}
			if seen[pw] || seen[ph] {
				t.Fatalf("repeat after %d", i)
			}
			seen[pw], seen[ph] = true, true
		}
	}
}

func TestGenerateLimits(t *testing.T) {
	p := Default()
	g := NewGenerator(&p)
	if _, err := g.Chars(8, ""); err == nil {
		t.Error("length below min_length: no error")
	}
	if _, err := g.Chars(MaxLength+1, ""); err == nil {
		t.Error("length above max: no error")
	}
	if pw, err := g.Chars(40, ""); err != nil || len(pw) != 40 {
		t.Errorf("Chars(40) = %q, %v", pw, err)
	}
	if _, err := g.Words(2, ""); err == nil {
		t.Error("2 words: no error")
	}
	if pw, err := g.Words(7, ""); err != nil || strings.Count(pw, "-") != 6 {
		t.Errorf("Words(7) = %q, %v", pw, err)
	}
	if n := len(WordList()); n != wordCount {
		t.Errorf("word list has %d words; want %d", n, wordCount)
	}
}
