package maillog

import "mailgate/internal/rules"

// nginx's mail proxy writes one line per login to its error log, at level
// info (ngx_mail_auth_http_module.c and ngx_mail_proxy_module.c, nginx
// 1.22; the ", client: ..., server: ..., login: ..." tail is
// ngx_mail_log_error's):
//
//	2026/12/05 19:03:31 [info] 4630#4630: *4 client login failed: "Invalid login or password" while in http auth state, client: 127.0.0.72, server: 127.0.0.1:11143, login: "alice@example.test"
//	2026/12/05 19:03:31 [info] 4630#4630: *1 client logged in, client: 127.0.0.71, server: 127.0.0.1:11143, login: "alice@example.test", upstream: 127.0.0.1:10143
//
// The quoted text after "failed:" is the auth server's Auth-Status; the
// login, which the client chose, comes after the address. The line does
// not name the protocol: the service is taken from the port the client
// connected to when it is a standard one (143/993 imap, 110/995 pop3,
// 25/465/587 smtp), else it is OtherService.

func parseNginx(msg []byte, ev *Event) bool {
	// "*<connection> " before the text.
	if len(msg) > 0 && msg[0] == '*' {
		sp := indexByte(msg, ' ')
		if sp < 0 {
			return false
		}
		msg = msg[sp+1:]
	}
	success := false
	switch {
	case hasPrefix(msg, "client logged in, client: "):
		success = true
	case hasPrefix(msg, "client login failed: "):
	default:
		return false
	}
	c := indexString(msg, ", client: ")
	if c < 0 {
		return false
	}
	rest := msg[c+len(", client: "):]
	e := indexString(rest, ", ")
	if e < 0 {
		return false
	}
	addr, ok := parseAddr(rest[:e])
	if !ok {
		return false
	}
	rest = rest[e:]
	*ev = Event{Program: Nginx, Client: addr, Success: success, Service: rules.OtherService}
	if !success {
		ev.Attempts = 1
	}
	if hasPrefix(rest, ", server: ") {
		srv := rest[len(", server: "):]
		if e := indexString(srv, ", "); e >= 0 {
			srv = srv[:e]
		}
		if p := lastIndexString(srv, ":"); p >= 0 {
			ev.Service = nginxService(srv[p+1:])
		}
	}
	l := indexString(rest, `, login: "`)
	if l < 0 {
		return false
	}
	login := rest[l+len(`, login: "`):]
	if success {
		// nginx 1.22 writes the login as the client sent it, newlines
		// included (captured: an IMAP literal), so a client can start a
		// line of its own; what follows a forged line is nginx's closing
		// quote. A success line must end in ", upstream: addr:port".
		u := lastIndexString(login, `", upstream: `)
		if u < 0 || !isAddrPort(login[u+len(`", upstream: `):]) {
			return false
		}
		login = login[:u]
	} else if n := len(login); n > 0 && login[n-1] == '"' {
		login = login[:n-1]
	}
	// else: the login held a newline; this line has its first part.
	ev.Login = rules.NormalizeLogin(string(login))
	return true
}

func nginxService(port []byte) rules.Service {
	switch string(port) {
	case "143", "993":
		return rules.IMAP
	case "110", "995":
		return rules.POP3
	case "25", "465", "587":
		return rules.SMTP
	}
	return rules.OtherService
}

// isAddrPort reports whether b is "ip:port" or "[ipv6]:port" and nothing
// else.
func isAddrPort(b []byte) bool {
	p := lastIndexString(b, ":")
	if p < 1 || !allDigits(b[p+1:]) {
		return false
	}
	h := b[:p]
	if h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	_, ok := parseAddr(h)
	return ok
}
