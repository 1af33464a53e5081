package dovecot

import (
	"os"
	"strings"
	"testing"
)

// TestDocSnippets checks that docs/dovecot.md shows the Dovecot snippets
// in etc/dovecot verbatim, each in a fenced block, so the two cannot
// drift apart.
func TestDocSnippets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/dovecot.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"95-mailgate.conf", "95-mailgate-2.4.conf"} {
		snippet, err := os.ReadFile("../../etc/dovecot/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(snippet), "\n") {
			t.Errorf("etc/dovecot/%s does not end in a newline", f)
		}
		if !strings.Contains(string(doc), "\n```\n"+string(snippet)+"```\n") {
			t.Errorf("docs/dovecot.md does not contain etc/dovecot/%s verbatim in a ``` block", f)
		}
		if !strings.Contains(string(doc), "etc/dovecot/"+f) {
			t.Errorf("docs/dovecot.md does not name etc/dovecot/%s", f)
		}
	}
}
