package dovecot

import (
	"fmt"
	"net/netip"
	"strconv"

	"mailgate/internal/rules"
)

// Request is one auth policy request body as Dovecot sends it
// (protocols.md §1.2, §1.8): a flat JSON object whose template values are
// strings and whose appended values (tls, success, policy_reject) are JSON
// booleans (parsed by readObject, json.go). Keys Dovecot nests ("a/b=" attributes) and keys mailgate does
// not know are ignored.
type Request struct {
	Login     string // as sent; the door normalizes it
	Remote    netip.Addr
	Local     netip.AddrPort // from the optional "local" and "lport" attributes
	Protocol  string
	PwHash    string // never logged
	SessionID string
	DeviceID  string
	FailType  string // Dovecot 2.4 "fail_type"; meaningful in report only
	TLS       bool
	// Success and PolicyReject come with command=report only.
	Success      bool
	HasSuccess   bool // the body had a "success" key
	PolicyReject bool
}

// ParseRequest parses a request body. Its errors never quote the pwhash
// and may quote the remote or local address.
//
// The body must be exactly one JSON object (trailing data is an error).
// "remote" must be an IP address or empty; an empty or missing remote
// gives the zero Remote, which the engine refuses (bad_address). "local"
// and "lport", when present and not empty, must be an IP address and a
// port number; lport without local is checked and dropped.
func ParseRequest(body []byte) (Request, error) {
	var w wireFields
	if err := readObject(body, &w); err != nil {
		return Request{}, fmt.Errorf("request body: %w", err)
	}
	req := Request{
		Login:        w.login,
		Protocol:     w.protocol,
		PwHash:       w.pwhash,
		SessionID:    w.sessionID,
		DeviceID:     w.deviceID,
		FailType:     w.failType,
		TLS:          w.tls,
		Success:      w.success,
		HasSuccess:   w.hasSuccess,
		PolicyReject: w.policyReject,
	}
	if w.remote != "" {
		a, err := rules.ParseAddr(w.remote)
		if err != nil {
			return Request{}, fmt.Errorf("remote %s is not an IP address", quoteShort(w.remote))
		}
		req.Remote = a
	}
	var port uint64
	if w.lport != "" {
		p, err := strconv.ParseUint(w.lport, 10, 16)
		if err != nil {
			return Request{}, fmt.Errorf("lport %s is not a port number", quoteShort(w.lport))
		}
		port = p
	}
	if w.local != "" {
		a, err := rules.ParseAddr(w.local)
		if err != nil {
			return Request{}, fmt.Errorf("local %s is not an IP address", quoteShort(w.local))
		}
		req.Local = netip.AddrPortFrom(a, uint16(port))
	}
	return req, nil
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}
