package postfix

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// The socketmap protocol (socketmap_table(5), protocols.md §3.5): each
// request and each reply is one netstring (http://cr.yp.to/proto/netstrings.txt),
// "<length>:<payload>,"; a request is "<name> <key>", a reply
// "OK <data>", "NOTFOUND ", "TEMP <reason>", "TIMEOUT <reason>" or
// "PERM <reason>". Postfix keeps the connection for more requests.

// MaxSocketmapRequest bounds a socketmap request's payload. Postfix sends
// a map name and one key (an address or host name); its own limit on
// replies is 100000 bytes.
const MaxSocketmapRequest = 10000

// maxLenDigits bounds the length prefix of a netstring: enough for
// MaxSocketmapRequest, with room for leading zeros.
const maxLenDigits = 7

// ErrNetstring is the error (wrapped) for a netstring that cannot be
// read: the connection cannot be resynchronised and is closed.
var ErrNetstring = errors.New("malformed netstring")

// readNetstring reads one netstring's payload, of at most max bytes, into
// buf (reused). It returns io.EOF when br ends before a netstring starts.
func readNetstring(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' && digits > 0 {
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: %q in the length", ErrNetstring, c)
		}
		if digits++; digits > maxLenDigits {
			return nil, fmt.Errorf("%w: length of more than %d digits", ErrNetstring, maxLenDigits)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrNetstring, n, max)
	}
	if cap(buf) < n+1 {
		buf = make([]byte, n+1)
	}
	buf = buf[:n+1]
	if _, err := io.ReadFull(br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("%w: no ',' after %d bytes", ErrNetstring, n)
	}
	return buf[:n], nil
}

// appendNetstring appends payload as a netstring.
func appendNetstring(b []byte, payload string) []byte {
	b = fmt.Appendf(b, "%d:", len(payload))
	b = append(b, payload...)
	return append(b, ',')
}

// socketmapReply answers one socketmap request payload.
func (h *Handler) socketmapReply(req []byte, now time.Time) string {
	name, key, ok := bytes.Cut(req, []byte{' '})
	if !ok || len(name) == 0 {
		h.diag(now, "postfix: socketmap request is not \"name key\"; answering PERM", "request", clip(string(req)))
		return "PERM malformed request"
	}
	res, found, err := h.Lookup(string(name), string(key), now)
	switch {
	case err != nil:
		h.diag(now, "postfix: socketmap lookup in an unknown map; answering PERM (fix the map name in main.cf)", "map", clip(string(name)))
		return "PERM unknown map name (mailgate serves " + MapRelay + ", " + MapBlock + " and " + MapClient + ")"
	case found:
		return "OK " + res
	}
	return "NOTFOUND "
}

// The tcp_table protocol (tcp_table(5), Postfix's src/util/dict_tcp.c):
// "get <key>\n" asks, "200 <data>\n" answers found, "500 <text>\n" not
// found, "400 <text>\n" a temporary error (Postfix then disconnects and
// the lookup fails with 451 4.3.5). Keys and reply texts are %XX encoded:
// '%', white space and every byte that is not printable ASCII
// (hex_quote.c); the decoding takes either case.

// MaxTCPLine bounds a tcp_table request line, newline excluded, and a
// reply line, newline included (DICT_TCP_MAXLEN).
const MaxTCPLine = 4096

// ErrTCPLineTooLong is the error for a tcp_table request over MaxTCPLine.
var ErrTCPLineTooLong = fmt.Errorf("tcp_table request longer than %d bytes", MaxTCPLine)

// readTCPLine reads one request line without its LF (or CRLF). It
// returns io.EOF when br ends before a line starts.
func readTCPLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > MaxTCPLine+2 {
			return nil, ErrTCPLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		buf = buf[:len(buf)-1]
		if n := len(buf); n > 0 && buf[n-1] == '\r' {
			buf = buf[:n-1]
		}
		if len(buf) > MaxTCPLine {
			return nil, ErrTCPLineTooLong
		}
		return buf, nil
	}
}

// Fixed tcp_table replies.
const (
	tcpNotFound  = "500 not-found"
	tcpMalformed = "400 malformed%20request"
	tcpTooLong   = "400 reply%20too%20long"
)

// tcpReply answers one tcp_table request line (without its newline) for
// the map mapName, which ServeTCPTable checked. The reply has no newline.
func (h *Handler) tcpReply(line []byte, mapName string, now time.Time) string {
	quoted, ok := bytes.CutPrefix(line, []byte("get "))
	if !ok {
		h.diag(now, "postfix: tcp_table request is not \"get <key>\"; answering 400", "request", clip(string(line)))
		return tcpMalformed
	}
	key, ok := hexUnquote(quoted)
	if !ok {
		h.diag(now, "postfix: tcp_table key is not %XX-encoded; answering 400", "request", clip(string(line)))
		return tcpMalformed
	}
	res, found, err := h.Lookup(mapName, key, now)
	if err != nil {
		return "400 " + hexQuote(err.Error())
	}
	if !found {
		return tcpNotFound
	}
	reply := "200 " + hexQuote(res)
	if len(reply)+1 > MaxTCPLine {
		h.diag(now, "postfix: tcp_table answer too long; answering 400", "bytes", len(reply))
		return tcpTooLong
	}
	return reply
}

// hexQuote encodes s as Postfix's hex_quote does: '%', white space and
// bytes that are not printable ASCII become %XX (upper case).
func hexQuote(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustQuote(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustQuote(c) {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// mustQuote: '%', ISSPACE and !ISPRINT in Postfix's ASCII-only sense.
func mustQuote(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '%'
}

// hexUnquote decodes %XX sequences (either case), as Postfix's
// hex_unquote; ok is false for a '%' not followed by two hex digits.
func hexUnquote(b []byte) (string, bool) {
	if bytes.IndexByte(b, '%') < 0 {
		return string(b), true
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '%' {
			if i+2 >= len(b) {
				return "", false
			}
			hi, ok1 := unhex(b[i+1])
			lo, ok2 := unhex(b[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			i += 2
		}
		out = append(out, c)
	}
	return string(out), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
