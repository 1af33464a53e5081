// Package passcheck verifies a login's cleartext password against the mail
// server, for doors that see the password but whose mail server will not
// check it again: nginx's mail proxy hands an SMTP backend `XCLIENT LOGIN=`
// and no password (protocols.md §2.2, §2.4), so mailgate must verify it
// before answering Auth-Status: OK.
//
// Two backends answer the same question:
//   - Dovecot speaks Dovecot's auth client protocol to its auth service
//     (`service auth { inet_listener … }` or a unix socket), the way Postfix's
//     SASL does: one persistent connection, many requests multiplexed by id,
//     the real client address passed as rip so Dovecot's penalty and auth
//     policy see it (protocols.md §2.4, §5.1;
//     https://doc.dovecot.org/2.3/developer_manual/design/auth_protocol/).
//   - IMAP logs in to an IMAP server with LOGIN and logs out, as the seed's
//     PHP script did; one connection per verification.
//
// Both answer ok=true for a correct password, ok=false for a wrong one or an
// unknown user, and an error only when the backend could not answer (down,
// timeout, protocol error, temporary failure): a door turns that into a
// temporary failure, never into "wrong password".
//
// It is not a password store, does not cache answers, does not decide
// anything (internal/policy does) and does not count failures (the door
// feeds the brute-force tracker, using PwHash for the password bucket). It
// never logs a password and never puts one, or its base64 form, into an
// error.
package passcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
)

// Request is one password to verify.
type Request struct {
	// Service is the Dovecot service name: "imap", "pop3", "smtp".
	Service string
	Login   string
	// Password is never logged and not kept after Verify returns.
	Password string
	// Client is the real client's address, passed to Dovecot as rip: its
	// per-address penalty and its auth policy see it.
	Client netip.Addr
	// ClientPort is the client's port; 0 = unknown.
	ClientPort uint16
	// Local is the address the client connected to (lip); optional.
	Local netip.Addr
	// TLS says the client used TLS (Dovecot's "secured").
	TLS bool
	// Session is an optional session id, passed as session=.
	Session string
}

// Size limits on what a Request may carry. Longer logins or passwords are
// answered "wrong" without asking the backend: no mail client sends them,
// and Dovecot would drop the whole connection over an overlong line.
const (
	MaxLoginLen    = 512
	MaxPasswordLen = 1024
	// MaxLineLen bounds a line read from a backend; a longer one is a
	// protocol error that closes the connection.
	MaxLineLen = 64 << 10
)

var (
	// ErrTemporary is a backend's own temporary failure (Dovecot's FAIL
	// with "temp", IMAP's NO [UNAVAILABLE]).
	ErrTemporary = errors.New("temporary failure")
	// ErrProtocol is a reply that does not follow the protocol.
	ErrProtocol = errors.New("protocol error")
	// ErrClosed is returned by a verifier after Close.
	ErrClosed = errors.New("verifier closed")
)

// acceptable reports whether the credentials can be sent at all: a NUL
// cannot be carried by SASL PLAIN or IMAP, and empty or oversized values
// are never a correct login. Callers answer "wrong" (false, nil) when it
// returns false.
func acceptable(r *Request) bool {
	return r.Login != "" && r.Password != "" &&
		len(r.Login) <= MaxLoginLen && len(r.Password) <= MaxPasswordLen &&
		!strings.ContainsRune(r.Login, 0) && !strings.ContainsRune(r.Password, 0)
}

// PwHash is Dovecot's auth_policy password hash with its defaults
// (auth_policy_hash_mech = sha256, auth_policy_hash_truncate = 12): the top
// 12 bits of sha256(nonce || login || NUL || password), as 4 hex digits
// (the first always "0"). protocols.md §1.3. With mailgate's own nonce it
// buckets a password so a stale client (one wrong password repeated) can
// be told from guessing, without keeping the password.
func PwHash(nonce []byte, login, password string) string {
	h := sha256.New()
	h.Write(nonce)
	h.Write([]byte(login))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var sum [sha256.Size]byte
	d := h.Sum(sum[:0])
	v := (uint16(d[0])<<8 | uint16(d[1])) >> 4
	return hex.EncodeToString([]byte{byte(v >> 8), byte(v)})
}

// addrString renders an address the way Dovecot expects it: IPv4-mapped
// IPv6 as IPv4, no zone. It returns "" for the zero Addr.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().WithZone("").String()
}
