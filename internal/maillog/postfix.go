package maillog

import "mailgate/internal/rules"

// parsePostfix parses the lines of Postfix's smtpd (tag "postfix/smtpd",
// or "postfix/submission/smtpd" and the like with a master.cf
// syslog_name). Written in a later commit.
func parsePostfix(name, msg []byte, ev *Event) bool {
	_ = rules.SMTP
	return false
}
