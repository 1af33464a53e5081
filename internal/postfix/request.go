package postfix

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of a policy request. Postfix 3.7 sends about 30 attributes and
// under 1 KiB (protocols.md §3.2); the longest values are addresses and
// TLS certificate names. A request over a limit is a protocol violation:
// the connection is closed without an answer (SMTPD_POLICY_README: "on
// trouble, log a warning and disconnect"), and Postfix retries on a new
// connection or applies its default_action.
const (
	MaxLineLen    = 4096     // one "name=value" line, newline excluded
	MaxAttributes = 128      // attribute lines in one request
	MaxRequestLen = 64 << 10 // one request, newlines included
)

// Protocol violations returned (wrapped) by ReadRequest.
var (
	ErrLineTooLong       = fmt.Errorf("line longer than %d bytes", MaxLineLen)
	ErrTooManyAttributes = fmt.Errorf("more than %d attributes", MaxAttributes)
	ErrRequestTooLarge   = fmt.Errorf("request larger than %d bytes", MaxRequestLen)
	ErrMalformed         = errors.New("malformed attribute")
)

// Request is the part of one policy delegation request mailgate uses
// (SMTPD_POLICY_README "Protocol description"; the attributes Postfix
// 3.7.11 sends are in protocols.md §3.2). Values are as sent; the
// handler parses the address and normalizes the login.
type Request struct {
	Request            string // "smtpd_access_policy"
	ProtocolState      string // CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN
	ClientAddress      string // an IPv4 or IPv6 address, or "unknown"
	SASLUsername       string // set after SMTP AUTH (or XCLIENT LOGIN=)
	EncryptionProtocol string // "TLSv1.3"; empty without TLS
	PolicyContext      string // check_policy_service { …, policy_context=relaycheck }
	Instance           string // the same for every request about one message
	// Attributes is the number of attribute lines read, kept or not.
	Attributes int
}

// ReadRequest reads one request from br into r: "name=value" lines up to
// an empty line. Unknown attributes and the ones mailgate does not use
// are skipped; a line may end in CRLF (Postfix sends LF). It returns
// io.EOF when br ends before a request starts (Postfix closed an idle
// connection), io.ErrUnexpectedEOF when it ends inside one, and an error
// wrapping ErrLineTooLong, ErrTooManyAttributes, ErrRequestTooLarge or
// ErrMalformed (a line without '=', or a used attribute sent twice) for
// a request that must not be answered. br may have any buffer size.
func ReadRequest(br *bufio.Reader, r *Request) error {
	*r = Request{}
	var seen uint8 // bits of kept attributes, to refuse repeats
	total := 0
	var long []byte // a line longer than br's buffer
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull && len(long) <= MaxLineLen+2 { // + CR LF
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			if len(long) > MaxLineLen+2 {
				// Too long, whether or not more follows: the answer must
				// not depend on how much the reader's buffer holds.
				return fmt.Errorf("attribute %d: %w", r.Attributes+1, ErrLineTooLong)
			}
			line = long
		}
		if err != nil {
			if err == io.EOF {
				if len(line) == 0 && total == 0 {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			if err == bufio.ErrBufferFull {
				return fmt.Errorf("attribute %d: %w", r.Attributes+1, ErrLineTooLong)
			}
			return err
		}
		total += len(line)
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > MaxLineLen {
			return fmt.Errorf("attribute %d: %w", r.Attributes+1, ErrLineTooLong)
		}
		if total > MaxRequestLen {
			return ErrRequestTooLarge
		}
		if len(line) == 0 {
			return nil
		}
		r.Attributes++
		if r.Attributes > MaxAttributes {
			return ErrTooManyAttributes
		}
		name, value, ok := bytes.Cut(line, []byte{'='})
		if !ok || len(name) == 0 {
			return fmt.Errorf("attribute %d: %w: no name=value", r.Attributes, ErrMalformed)
		}
		var dst *string
		var bit uint8
		switch string(name) {
		case "request":
			dst, bit = &r.Request, 1<<0
		case "protocol_state":
			dst, bit = &r.ProtocolState, 1<<1
		case "client_address":
			dst, bit = &r.ClientAddress, 1<<2
		case "sasl_username":
			dst, bit = &r.SASLUsername, 1<<3
		case "encryption_protocol":
			dst, bit = &r.EncryptionProtocol, 1<<4
		case "policy_context":
			dst, bit = &r.PolicyContext, 1<<5
		case "instance":
			dst, bit = &r.Instance, 1<<6
		default:
			continue
		}
		if seen&bit != 0 {
			// Postfix never repeats an attribute: a repeat is a value
			// with an embedded newline, or not Postfix at all. Which
			// of the two values to believe cannot be known.
			return fmt.Errorf("attribute %d: %w: %s sent twice", r.Attributes, ErrMalformed, name)
		}
		seen |= bit
		*dst = internValue(value)
	}
}

// internValue returns value as a string, without allocating for the
// values most requests carry.
func internValue(v []byte) string {
	switch string(v) {
	case "":
		return ""
	case "smtpd_access_policy":
		return "smtpd_access_policy"
	case "RCPT":
		return "RCPT"
	case "DATA":
		return "DATA"
	case "END-OF-MESSAGE":
		return "END-OF-MESSAGE"
	case "CONNECT":
		return "CONNECT"
	case "EHLO":
		return "EHLO"
	case "MAIL":
		return "MAIL"
	case "relaycheck":
		return "relaycheck"
	case "TLSv1.3":
		return "TLSv1.3"
	case "TLSv1.2":
		return "TLSv1.2"
	}
	return string(v)
}
