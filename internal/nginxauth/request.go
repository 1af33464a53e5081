package nginxauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"mailgate/internal/rules"
)

// Method is the Auth-Method nginx sends (protocols.md §2.1). nginx says
// "plain" for every cleartext method: IMAP LOGIN, AUTHENTICATE PLAIN and
// LOGIN, POP3 USER/PASS and AUTH PLAIN/LOGIN, SMTP AUTH PLAIN and LOGIN.
type Method uint8

const (
	MethodPlain    Method = iota + 1 // cleartext password in Auth-Pass
	MethodNone                       // SMTP with smtp_auth none: an MTA delivering mail, no login
	MethodAPOP                       // POP3 APOP: Auth-Pass is a digest of Auth-Salt and the password
	MethodCRAMMD5                    // CRAM-MD5: likewise
	MethodExternal                   // SASL EXTERNAL (a client certificate)
)

var methodNames = [...]string{
	MethodPlain:    "plain",
	MethodNone:     "none",
	MethodAPOP:     "apop",
	MethodCRAMMD5:  "cram-md5",
	MethodExternal: "external",
}

func (m Method) String() string {
	if m > 0 && int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// Protocol is the Auth-Protocol nginx sends: the mail protocol the client
// speaks.
type Protocol uint8

const (
	IMAP Protocol = iota
	POP3
	SMTP
	numProtocols
)

var protocolNames = [numProtocols]string{IMAP: "imap", POP3: "pop3", SMTP: "smtp"}

// String is the protocol's name as nginx sends it and as the config keys
// Backends and Verify: "imap", "pop3", "smtp".
func (p Protocol) String() string {
	if p < numProtocols {
		return protocolNames[p]
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "imap", "pop3" or "smtp" (any case).
func ParseProtocol(s string) (Protocol, bool) {
	for i, n := range protocolNames {
		if strings.EqualFold(s, n) {
			return Protocol(i), true
		}
	}
	return 0, false
}

// Request is one auth_http request, parsed from the headers nginx sends
// (protocols.md §2.1; https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html).
type Request struct {
	Method   Method
	Protocol Protocol
	// User is Auth-User unescaped, as the client typed it (not normalized;
	// the door normalizes it for the engine). Empty for MethodNone.
	User string
	// Pass is Auth-Pass unescaped: the cleartext password for MethodPlain.
	// It is never logged, never put in an error and not kept after the
	// request.
	Pass string
	// Attempt is Auth-Login-Attempt: 1, 2, 3… per client connection.
	Attempt int
	// Client is the real client: Proxy-Protocol-Addr when nginx's listener
	// has proxy_protocol, else Client-IP. Unmapped, without zone.
	Client netip.Addr
	// ClientPort is Proxy-Protocol-Port; 0 when unknown (nginx does not
	// send the client's port otherwise).
	ClientPort uint16
	// Peer is Client-IP: the address that connected to nginx. Without the
	// PROXY protocol it is Client; with it, it is the load balancer.
	Peer netip.Addr
	// Local is Proxy-Protocol-Server-Addr and -Port, the address the
	// client connected to; the zero value when nginx did not send them.
	Local netip.AddrPort
	// ClientHost is Client-Host (SMTP only): the client's DNS name,
	// "[UNAVAILABLE]" or "[TEMPUNAVAIL]". Informational; cut to
	// MaxInfoLen bytes.
	ClientHost string
	// TLS is set when nginx sent Auth-SSL: on.
	TLS bool
	// SMTPHelo, SMTPFrom and SMTPTo come with MethodNone: the HELO name and
	// the whole MAIL FROM and RCPT TO command lines. Informational; cut to
	// MaxInfoLen bytes.
	SMTPHelo, SMTPFrom, SMTPTo string
}

// Size limits. A request over a limit on a field the decision depends on
// is malformed; informational fields are cut instead.
const (
	// MaxLoginLen bounds Auth-User after unescaping.
	MaxLoginLen = 256
	// MaxPasswordLen bounds Auth-Pass after unescaping.
	MaxPasswordLen = 1024
	// MaxInfoLen bounds Client-Host and the Auth-SMTP-* lines.
	MaxInfoLen = 512
	// MaxHeaderBytes bounds the whole header block (names and values).
	// nginx's requests are a few hundred bytes; a client certificate
	// (auth_http_pass_client_cert) adds a few KiB.
	MaxHeaderBytes = 32 << 10
	// maxAttempt bounds Auth-Login-Attempt.
	maxAttempt = 1 << 30
	// maxShortValue bounds the other single-token headers.
	maxShortValue = 64
)

// Canonical header names (textproto form) of what nginx sends.
const (
	hMethod     = "Auth-Method"
	hUser       = "Auth-User"
	hPass       = "Auth-Pass"
	hProtocol   = "Auth-Protocol"
	hAttempt    = "Auth-Login-Attempt"
	hClientIP   = "Client-Ip"
	hClientHost = "Client-Host"
	hSSL        = "Auth-Ssl"
	hHelo       = "Auth-Smtp-Helo"
	hFrom       = "Auth-Smtp-From"
	hTo         = "Auth-Smtp-To"
	hPPAddr     = "Proxy-Protocol-Addr"
	hPPPort     = "Proxy-Protocol-Port"
	hPPSrvAddr  = "Proxy-Protocol-Server-Addr"
	hPPSrvPort  = "Proxy-Protocol-Server-Port"
)

// errNoPassword marks a malformed Auth-Pass without quoting it.
var errNoPassword = errors.New("Auth-Pass is not validly escaped")

// ParseRequest parses the headers of an auth_http request. It is pure and
// never panics; its errors name the header and may quote short values,
// but never the password.
//
// Every header nginx always sends must be there exactly once: Auth-Method,
// Auth-User, Auth-Pass, Auth-Protocol, Auth-Login-Attempt, Client-IP
// (protocols.md §2.1). Auth-User and Auth-Pass are unescaped the way nginx
// escapes them (ngx_escape_uri with NGX_ESCAPE_MAIL_AUTH: space, '%' and
// control characters become %XX; bytes ≥ 0x80 are sent raw; '+' is not
// special). Headers mailgate does not read are ignored.
//
// When Proxy-Protocol-Addr is present (nginx's listener has
// proxy_protocol, 1.19.8+) it is taken as the real client, and Client-IP
// (the load balancer) goes to Peer: the admin put a load balancer in front
// of nginx, and bans, rules and countries are about the client behind it.
// A listener with proxy_protocol must therefore be reachable only from the
// load balancer, as nginx's own documentation advises; with
// set_real_ip_from nginx already puts the same address in Client-IP.
func ParseRequest(h http.Header) (Request, error) {
	var req Request
	size := 0
	for k, vs := range h {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if size > MaxHeaderBytes {
		return Request{}, fmt.Errorf("header block of %d bytes is over the limit of %d", size, MaxHeaderBytes)
	}

	m, err := single(h, hMethod, maxShortValue)
	if err != nil {
		return Request{}, err
	}
	switch strings.ToLower(m) {
	case "plain":
		req.Method = MethodPlain
	case "none":
		req.Method = MethodNone
	case "apop":
		req.Method = MethodAPOP
	case "cram-md5":
		req.Method = MethodCRAMMD5
	case "external":
		req.Method = MethodExternal
	default:
		return Request{}, fmt.Errorf("%s %s: unknown method", hMethod, quoteShort(m))
	}

	p, err := single(h, hProtocol, maxShortValue)
	if err != nil {
		return Request{}, err
	}
	proto, ok := ParseProtocol(p)
	if !ok {
		return Request{}, fmt.Errorf("%s %s: not imap, pop3 or smtp", hProtocol, quoteShort(p))
	}
	req.Protocol = proto
	if req.Method == MethodNone && proto != SMTP {
		return Request{}, fmt.Errorf("%s none over %s: nginx uses it only for SMTP", hMethod, proto)
	}

	n, err := single(h, hAttempt, maxShortValue)
	if err != nil {
		return Request{}, err
	}
	if req.Attempt, err = parseAttempt(n); err != nil {
		return Request{}, err
	}

	user, err := single(h, hUser, 3*MaxLoginLen)
	if err != nil {
		return Request{}, err
	}
	pass, err := single(h, hPass, 3*MaxPasswordLen) // single's errors quote no value
	if err != nil {
		return Request{}, err
	}
	if req.Method != MethodNone {
		if req.User, err = unescape(user); err != nil {
			return Request{}, fmt.Errorf("%s %s: %w", hUser, quoteShort(user), err)
		}
		if len(req.User) > MaxLoginLen {
			return Request{}, fmt.Errorf("%s is %d bytes long, over the limit of %d", hUser, len(req.User), MaxLoginLen)
		}
		for i := 0; i < len(req.User); i++ {
			if c := req.User[i]; c < 0x20 || c == 0x7f {
				return Request{}, fmt.Errorf("%s %s has a control character", hUser, quoteShort(req.User))
			}
		}
		if req.Pass, err = unescape(pass); err != nil {
			return Request{}, errNoPassword
		}
		if len(req.Pass) > MaxPasswordLen {
			return Request{}, fmt.Errorf("%s is %d bytes long, over the limit of %d", hPass, len(req.Pass), MaxPasswordLen)
		}
	}

	ip, err := single(h, hClientIP, maxShortValue)
	if err != nil {
		return Request{}, err
	}
	if req.Peer, err = rules.ParseAddr(ip); err != nil {
		return Request{}, fmt.Errorf("%s %s is not an IP address", hClientIP, quoteShort(ip))
	}
	req.Client = req.Peer

	if err := parseProxy(h, &req); err != nil {
		return Request{}, err
	}

	if v, err := optional(h, hSSL, maxShortValue); err != nil {
		return Request{}, err
	} else {
		req.TLS = strings.EqualFold(v, "on")
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{hClientHost, &req.ClientHost}, {hHelo, &req.SMTPHelo}, {hFrom, &req.SMTPFrom}, {hTo, &req.SMTPTo}} {
		if vs := h[f.name]; len(vs) > 0 {
			*f.dst = cut(vs[0], MaxInfoLen)
		}
	}
	return req, nil
}

// parseProxy reads the Proxy-Protocol-* headers (all four come together).
func parseProxy(h http.Header, req *Request) error {
	addr, err := optional(h, hPPAddr, maxShortValue)
	if err != nil || addr == "" {
		return err
	}
	if req.Client, err = rules.ParseAddr(addr); err != nil {
		return fmt.Errorf("%s %s is not an IP address", hPPAddr, quoteShort(addr))
	}
	if req.ClientPort, err = optionalPort(h, hPPPort); err != nil {
		return err
	}
	srv, err := optional(h, hPPSrvAddr, maxShortValue)
	if err != nil || srv == "" {
		return err
	}
	a, err := rules.ParseAddr(srv)
	if err != nil {
		return fmt.Errorf("%s %s is not an IP address", hPPSrvAddr, quoteShort(srv))
	}
	port, err := optionalPort(h, hPPSrvPort)
	if err != nil {
		return err
	}
	req.Local = netip.AddrPortFrom(a, port)
	return nil
}

func optionalPort(h http.Header, name string) (uint16, error) {
	v, err := optional(h, name, maxShortValue)
	if err != nil || v == "" {
		return 0, err
	}
	p, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%s %s is not a port number", name, quoteShort(v))
	}
	return uint16(p), nil
}

// parseAttempt parses Auth-Login-Attempt: a decimal number ≥ 1.
func parseAttempt(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("%s %s is not an attempt number", hAttempt, quoteShort(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s %s is not an attempt number", hAttempt, quoteShort(s))
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > maxAttempt {
		return 0, fmt.Errorf("%s %s is out of range", hAttempt, quoteShort(s))
	}
	return n, nil
}

// single returns the one value of a required header of at most max bytes.
// Its errors quote no value (it reads the password too).
func single(h http.Header, name string, max int) (string, error) {
	vs := h[name]
	switch {
	case len(vs) == 0:
		return "", fmt.Errorf("missing %s header", name)
	case len(vs) > 1:
		return "", fmt.Errorf("%s header sent %d times", name, len(vs))
	case len(vs[0]) > max:
		return "", fmt.Errorf("%s header is %d bytes long, over the limit of %d", name, len(vs[0]), max)
	}
	return vs[0], nil
}

// optional is single for a header that may be missing ("" then).
func optional(h http.Header, name string, max int) (string, error) {
	if len(h[name]) == 0 {
		return "", nil
	}
	return single(h, name, max)
}

// unescape undoes nginx's NGX_ESCAPE_MAIL_AUTH escaping: every %XX becomes
// the byte XX. A '%' not followed by two hex digits cannot come from nginx
// (it escapes '%' itself) and is an error. '+' is a plain '+'.
func unescape(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			clear(b)
			return "", errors.New("'%' not followed by two hex digits")
		}
		b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
		i += 2
	}
	out := string(b)
	clear(b) // the scratch copy may hold a password
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// cut returns s cut to at most n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}
