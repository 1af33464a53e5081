package passcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Dovecot's auth protocol is lines of TAB-separated fields. Inside a field,
// \001 escapes: \001 → "\0011", TAB → "\001t", CR → "\001r", LF → "\001n"
// (and "\0010" is NUL when reading); any other escaped byte stands for
// itself. Dovecot: src/lib/strescape.c str_tabescape / str_tabunescape;
// https://doc.dovecot.org/2.3/developer_manual/design/auth_protocol/ .

// appendTabEscaped appends s to b, tab-escaped.
func appendTabEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0x01:
			b = append(b, 0x01, '1')
		case '\t':
			b = append(b, 0x01, 't')
		case '\r':
			b = append(b, 0x01, 'r')
		case '\n':
			b = append(b, 0x01, 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// tabUnescape undoes appendTabEscaped (and Dovecot's "\0010" for NUL). A
// trailing lone \001 is kept as it is.
func tabUnescape(f []byte) string {
	if bytes.IndexByte(f, 0x01) < 0 {
		return string(f)
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != 0x01 || i+1 == len(f) {
			out = append(out, c)
			continue
		}
		i++
		switch f[i] {
		case '0':
			out = append(out, 0)
		case '1':
			out = append(out, 0x01)
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		default:
			out = append(out, f[i])
		}
	}
	return string(out)
}

// Reply kinds a Dovecot auth server sends to a request.
const (
	replyOK   = "OK"
	replyFail = "FAIL"
	replyCont = "CONT"
)

// reply is a parsed reply line: OK, FAIL or CONT with the request id, the
// optional fields of OK and FAIL (name=value, or a bare flag with value ""),
// and the base64 data of CONT.
type reply struct {
	Kind   string
	ID     uint32
	Fields map[string]string
	Data   string // CONT only
}

// Temporary reports whether a FAIL is a temporary failure: the "temp"
// flag, or (Dovecot 2.3+) code=temp_fail.
func (r *reply) Temporary() bool {
	if _, ok := r.Fields["temp"]; ok {
		return true
	}
	return r.Fields["code"] == "temp_fail"
}

// maxFields bounds the fields of one reply line (a user's extra fields
// come back in OK; a few dozen is plenty).
const maxFields = 256

// parseReply parses one reply line to a request (without its LF):
//
//	OK   TAB <id> [TAB <field>]...
//	FAIL TAB <id> [TAB <field>]...
//	CONT TAB <id> TAB <base64 data>
//
// where a field is name=value or a bare flag. The id is a decimal uint32
// other than 0. Errors wrap ErrProtocol and name the command only: a reply
// is the server's text, and a misbehaving server might echo what it was
// sent.
func parseReply(line []byte) (*reply, error) {
	cmd, rest, _ := bytes.Cut(line, []byte{'\t'})
	kind := string(cmd)
	switch kind {
	case replyOK, replyFail, replyCont:
	default:
		return nil, fmt.Errorf("%w: unexpected command %s", ErrProtocol, quoteShort(cmd))
	}
	idField, rest, hasRest := bytes.Cut(rest, []byte{'\t'})
	id, err := strconv.ParseUint(string(idField), 10, 32)
	if err != nil || id == 0 || (len(idField) > 1 && idField[0] == '0') {
		return nil, fmt.Errorf("%w: %s with a bad id %s", ErrProtocol, kind, quoteShort(idField))
	}
	r := &reply{Kind: kind, ID: uint32(id)}
	if kind == replyCont {
		if bytes.IndexByte(rest, '\t') >= 0 {
			return nil, fmt.Errorf("%w: CONT with more than one data field", ErrProtocol)
		}
		r.Data = string(rest)
		return r, nil
	}
	if !hasRest {
		return r, nil
	}
	if n := bytes.Count(rest, []byte{'\t'}) + 1; n > maxFields {
		return nil, fmt.Errorf("%w: %s with %d fields (limit %d)", ErrProtocol, kind, n, maxFields)
	}
	r.Fields = make(map[string]string)
	for f := range bytes.SplitSeq(rest, []byte{'\t'}) {
		name, value, _ := bytes.Cut(f, []byte{'='})
		if len(name) == 0 {
			continue
		}
		r.Fields[tabUnescape(name)] = tabUnescape(value)
	}
	return r, nil
}

// quoteShort names a server's token in an error message: quoted if it is
// at most 16 upper-case letters, digits, '-' or '_' (a command, a status,
// an id), else only by its length. A misbehaving server may echo what it
// was sent, and an error must never carry a password or a piece of its
// base64 form.
func quoteShort(b []byte) string {
	if len(b) <= 16 {
		safe := true
		for _, c := range b {
			if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				safe = false
				break
			}
		}
		if safe {
			return strconv.Quote(string(b))
		}
	}
	return fmt.Sprintf("(%d bytes, not shown)", len(b))
}

// errLineTooLong is a line over MaxLineLen.
var errLineTooLong = fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, MaxLineLen)

// readLine reads one line ending in LF and returns it without the LF (and
// without a CR before it when trimCR is set). The slice is only valid until
// the next read. A line longer than max bytes is errLineTooLong; the reader
// is then left mid-line, so the connection must be closed.
func readLine(r *bufio.Reader, max int, trimCR bool) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Longer than the buffer: collect it, up to max.
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > max {
				return nil, errLineTooLong
			}
			line, err = r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if trimCR && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > max {
		return nil, errLineTooLong
	}
	return line, nil
}

// printable returns s cut to max bytes with everything but printable ASCII
// replaced by '?', for server texts quoted in errors and logs.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
