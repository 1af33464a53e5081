package nginxauth

import (
	"os"
	"strings"
	"testing"
)

// The docs page carries the copy-paste config files verbatim.
func TestDocSnippets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/nginx.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"nginx/mailgate-mail.conf", "postfix/master-nginx.cf", "dovecot/96-mailgate-auth.conf"} {
		snippet, err := os.ReadFile("../../etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "\n```\n"+string(snippet)+"```\n") {
			t.Errorf("docs/nginx.md does not contain etc/%s verbatim in a ``` block", f)
		}
		if !strings.Contains(string(doc), "etc/"+f) {
			t.Errorf("docs/nginx.md does not name etc/%s", f)
		}
	}
}
