package config

import (
	"slices"
	"strings"
	"testing"
)

func TestLogsParse(t *testing.T) {
	c, err := Parse([]byte(`
[store]
path = "/var/lib/mailgate/mailgate.db"
[logs]
enabled = true
[[logs.file]]
path = "/var/log/mail.log"
[[logs.file]]
path = "/var/log/dovecot.log"
programs = ["dovecot"]
services = ["imap", "pop3"]
[logs.journald]
enabled = true
units = ["postfix@-.service"]
identifiers = ["saslauthd"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Logs.Files) != 2 || c.Logs.Files[1].Services[1] != "pop3" || !c.Logs.Journald.Enabled {
		t.Fatalf("parsed %+v", c.Logs)
	}
	if got := c.LogStateDir(); got != "/var/lib/mailgate" {
		t.Errorf("state dir %q, want store.path's directory", got)
	}
	// The Dovecot door is on by default: Dovecot's and Postfix's lines
	// are its business.
	// The journal's automatic list has nginx; a file's never has (a
	// client can write a whole line into nginx's error.log).
	if got := c.LogPrograms(nil, false); !slices.Equal(got, []string{"nginx"}) {
		t.Errorf("automatic journal programs with the Dovecot door on: %v", got)
	}
	if got := c.LogPrograms(nil, true); len(got) != 0 {
		t.Errorf("automatic file programs with the Dovecot door on: %v", got)
	}
	c.Dovecot.Enabled = false
	if got := c.LogPrograms(nil, false); !slices.Equal(got, []string{"dovecot", "postfix", "nginx"}) {
		t.Errorf("automatic journal programs with the doors off: %v", got)
	}
	if got := c.LogPrograms(nil, true); !slices.Equal(got, []string{"dovecot", "postfix"}) {
		t.Errorf("automatic file programs with the doors off: %v", got)
	}
	c.Nginx.Enabled = true
	if got := c.LogPrograms(nil, false); !slices.Equal(got, []string{"postfix"}) {
		t.Errorf("automatic programs with the nginx door on: %v", got)
	}
	if got := c.LogPrograms([]string{"nginx"}, true); !slices.Equal(got, []string{"nginx"}) {
		t.Errorf("explicit nginx file: %v", got)
	}
	if got := c.LogPrograms([]string{"postfix"}, true); !slices.Equal(got, []string{"postfix"}) {
		t.Errorf("explicit programs: %v", got)
	}
}

func TestLogsValidate(t *testing.T) {
	_, err := Parse([]byte(`
[logs]
enabled = true
poll = "1ms"
max_line = 10
max_age = "-1s"
lag_bytes = 1
state_dir = "relative"
[[logs.file]]
path = "mail.log"
programs = ["exim"]
services = ["lmtp"]
[[logs.file]]
path = "/var/log/mail.log"
[[logs.file]]
path = "/var/log//mail.log"
[[logs.file]]
path = "/var/log/nginx/error.log"
programs = ["nginx", "dovecot"]
[logs.journald]
enabled = true
command = ""
units = ["--file=/etc/shadow", "a=b"]
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"logs.poll", "logs.max_line", "logs.max_age", "logs.lag_bytes", "logs.state_dir",
		"logs.file[0].path", "logs.file[0].programs[0]", "logs.file[0].services[0]", "logs.file[2].path", "logs.file[3].programs",
		"logs.journald.command", "logs.journald.units[1]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("[logs]\nenabled = true\n")); err == nil || !strings.Contains(err.Error(), "no [[logs.file]]") {
		t.Errorf("logs on with no source: %v", err)
	}
}
