package loggen

import (
	"bytes"
	"strings"
	"testing"
)

// TestGenerate: the same seed gives the same bytes, another seed other
// bytes, and Stats counts what was written.
func TestGenerate(t *testing.T) {
	var a, b, c bytes.Buffer
	st, err := Generate(&a, 20000, 1)
	if err != nil {
		t.Fatal(err)
	}
	Generate(&b, 20000, 1)
	Generate(&c, 20000, 2)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("seed 1 twice: different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("seeds 1 and 2: same output")
	}
	text := a.String()
	count := func(s string) int { return strings.Count(text, s) }
	if n := count("\n"); n != st.Lines || n != 20000 {
		t.Errorf("%d lines, Stats.Lines %d", n, st.Lines)
	}
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"Login:", count("-login: Login: "), st.DovecotLogins},
		{"auth failed", count("(auth failed, "), st.DovecotFailedConns},
		{"auth lines", count("): Password mismatch\n") + count("): unknown user\n"), st.DovecotChecks},
		{"plaintext", count("(tried to use disabled plaintext auth)"), st.DovecotPlaintext},
		{"postfix failures", count("authentication failed: "), st.PostfixFailures},
		{"postfix logins", count("sasl_username=") - count("authentication failed: "), st.PostfixLogins},
	} {
		if c.got != c.want || c.want == 0 {
			t.Errorf("%s: %d in the text, Stats %d", c.what, c.got, c.want)
		}
	}
}
