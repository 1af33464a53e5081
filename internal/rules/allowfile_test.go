package rules

import (
	"strings"
	"testing"
)

func TestReadUserAllowed(t *testing.T) {
	in := "<?php exit; ?>\n" +
		"alice@example.com|FR\n" +
		"  bob@example.com | 198.51.100.7 \r\n" +
		"\n# a comment\n// another\n" +
		"Carol@Example.com|de\n" +
		"dave@example.com|2001:db8::/48\n" +
		"?>\n"
	rs, err := ReadUserAllowed(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Account+" "+r.Action.String()+" "+r.MatchString()+" ("+r.Comment+")")
	}
	want := []string{
		"alice@example.com extra country:FR (user-allowed line 2)",
		"bob@example.com extra 198.51.100.7 (user-allowed line 3)",
		"carol@example.com extra country:DE (user-allowed line 7)",
		"dave@example.com extra 2001:db8::/48 (user-allowed line 8)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []struct{ in, err string }{
		{"alice@example.com\n", `line 1: "alice@example.com" is not login|COUNTRY or login|IP`},
		{"ok@example.com|FR\n|FR\n", "line 2:"},
		{"alice@example.com|FRA\n", `line 1: "FRA" is neither a country code nor an address`},
		{"alice@example.com|10.0.0.1/8\n", "host bits set"},
		{"al*ce@example.com|FR\n", "line 1: login:"},
		{"a@example.com|FR|x\n", "line 1:"},
		{strings.Repeat("x", 5000) + "\n", "line 1: longer than 4096 bytes"},
	} {
		_, err := ReadUserAllowed(strings.NewReader(bad.in))
		if err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%.40q: error %v, want %q", bad.in, err, bad.err)
		}
	}
}

func FuzzReadUserAllowed(f *testing.F) {
	f.Add("alice@example.com|FR\nbob@example.com|198.51.100.7\n")
	f.Add("<?php\n?>\n# x\n")
	f.Add("a|b|c\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ReadUserAllowed(strings.NewReader(in))
		if err != nil {
			return
		}
		for i := range rs {
			r := rs[i]
			if err := r.Validate(); err != nil {
				t.Fatalf("rule %d does not validate: %v", i, err)
			}
			if r.Action != Extra || r.None() {
				t.Fatalf("rule %d: %+v", i, r)
			}
		}
	})
}
