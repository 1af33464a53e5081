package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Bounds of a decision log search.
const (
	maxLineLen    = 8 << 10  // a longer line is skipped (decision values are cut at 256 bytes)
	readChunk     = 64 << 10 // bytes read at a time, backwards
	maxScanBytes  = 64 << 20 // bytes one page reads at most
	maxPageSize   = 200
	maxQueryField = 320
)

// Entry is one decision line.
type Entry struct {
	Time     time.Time
	Decision string // allow, deny, tarpit; "" on other lines
	Auth     string // success, failure
	Event    string // permit, ...
	Reason   string
	Rule     string
	Ban      string
	Door     string
	Service  string
	Login    string
	IP       string
	Country  string
	Pos      string // where the line is: its offset in the file, or its journal cursor
}

// Refused reports whether the line is a verdict that refused.
func (e *Entry) Refused() bool { return e.Decision == "deny" || e.Decision == "tarpit" }

// Verdict is what the line says happened: the decision, auth=RESULT or
// the event.
func (e *Entry) Verdict() string {
	switch {
	case e.Decision != "":
		return e.Decision
	case e.Auth != "":
		return "auth " + e.Auth
	}
	return e.Event
}

// ParseLine parses a decision line: key=value pairs separated by single
// spaces, values bare or Go-quoted (docs/decision-log.md). Unknown keys
// are skipped; a line without a valid time is an error.
func ParseLine(b []byte, e *Entry) error {
	*e = Entry{}
	if len(b) > maxLineLen {
		return errors.New("line too long")
	}
	b = bytes.TrimRight(b, "\r\n")
	for len(b) > 0 {
		eq := bytes.IndexByte(b, '=')
		if eq <= 0 {
			return errors.New("want key=value")
		}
		key := b[:eq]
		if bytes.ContainsAny(key, " \"") {
			return fmt.Errorf("bad key %q", clip(string(key)))
		}
		b = b[eq+1:]
		var raw []byte
		quoted := len(b) > 0 && b[0] == '"'
		if quoted {
			end := quotedEnd(b)
			if end < 0 {
				return errors.New("unterminated quoted value")
			}
			raw, b = b[:end], b[end:]
		} else {
			sp := bytes.IndexByte(b, ' ')
			if sp < 0 {
				sp = len(b)
			}
			raw, b = b[:sp], b[sp:]
		}
		if len(b) > 0 {
			if b[0] != ' ' {
				return errors.New("want a space after a value")
			}
			b = b[1:]
		}
		var dst *string
		switch string(key) {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, string(raw))
			if err != nil {
				return fmt.Errorf("time: %w", err)
			}
			e.Time = t
		case "decision":
			dst = &e.Decision
		case "auth":
			dst = &e.Auth
		case "event":
			dst = &e.Event
		case "reason":
			dst = &e.Reason
		case "rule":
			dst = &e.Rule
		case "ban":
			dst = &e.Ban
		case "door":
			dst = &e.Door
		case "service":
			dst = &e.Service
		case "login":
			dst = &e.Login
		case "ip":
			dst = &e.IP
		case "country":
			dst = &e.Country
		}
		if dst == nil {
			continue // a field the console does not show
		}
		if !quoted {
			*dst = string(raw)
			continue
		}
		v, err := strconv.Unquote(string(raw))
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*dst = v
	}
	if e.Time.IsZero() {
		return errors.New("no time")
	}
	return nil
}

// lineTime reads the time a decision line starts with.
func lineTime(line []byte) (time.Time, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("time="))
	if !ok {
		return time.Time{}, false
	}
	if sp := bytes.IndexByte(rest, ' '); sp > 0 {
		rest = rest[:sp]
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest))
	return t, err == nil
}

// quotedEnd returns the index after the closing quote of the Go-quoted
// string b starts with, or -1.
func quotedEnd(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// Query selects decision lines.
type Query struct {
	Login  string       // exact, lower-case
	Prefix netip.Prefix // the address is in it; invalid = any
	Reason string       // exact reason code, or "refused" for every refusal
	From   time.Time    // zero = any
	To     time.Time    // zero = any
	Before string       // where the previous page stopped (Page.Next); "" = the newest line
	Limit  int          // 1 to maxPageSize
}

func (q *Query) match(e *Entry) bool {
	if e.Decision == "" && e.Auth == "" && e.Event == "" {
		return false // not a decision line (the daemon's diagnostics, in the journal)
	}
	if q.Login != "" && e.Login != q.Login {
		return false
	}
	if q.Reason == "refused" && !e.Refused() || q.Reason != "" && q.Reason != "refused" && e.Reason != q.Reason {
		return false
	}
	if q.Prefix.IsValid() {
		a, err := netip.ParseAddr(e.IP)
		if err != nil || !q.Prefix.Contains(a.Unmap()) {
			return false
		}
	}
	if !q.To.IsZero() && e.Time.After(q.To) {
		return false
	}
	return q.From.IsZero() || !e.Time.Before(q.From)
}

// Page is one page of results, newest first.
type Page struct {
	Entries []Entry
	// Next is the Query.Before of the next (older) page; "" when the
	// search reached the start of the log (or Query.From).
	Next string
	Read string // how much was read, for people
}

// Source is where the decision lines are: a file, or the journal.
type Source struct {
	File string // the decision log file
	// Journal is journalctl and the arguments that select mailgate's
	// lines, e.g. {"journalctl", "--unit=mailgate.service"}.
	Journal []string
}

// Off reports whether there is nothing to read.
func (s Source) Off() bool { return s.File == "" && len(s.Journal) == 0 }

// backward calls fn with each line, newest first, from before (a
// Page.Next; "" = the newest line) until fn returns false or a bound is
// reached (maxScanBytes of a file, maxJournalLines of the journal). It
// returns where to go on ("" = the start was reached) and how much it read.
// since, when set, lets the journal skip older entries.
func (s Source) backward(ctx context.Context, before string, since time.Time, fn func(line []byte, pos string) bool) (next, read string, err error) {
	if len(s.Journal) > 0 && s.File == "" {
		next, n, err := journalBackward(ctx, s.Journal, before, since, fn)
		return next, fmt.Sprintf("%d journal entries read", n), err
	}
	if s.File == "" {
		return "", "", errNoLog
	}
	var end int64
	if before != "" {
		if end, err = strconv.ParseInt(before, 10, 64); err != nil || end <= 0 {
			return "", "", errors.New("before: not an offset in the file")
		}
	}
	f, err := os.Open(s.File)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", err
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("%s is not a regular file", s.File)
	}
	if end <= 0 || end > fi.Size() {
		end = fi.Size()
	}
	off, err := scanBackward(f, end, maxScanBytes, func(line []byte, off int64) bool {
		return fn(line, strconv.FormatInt(off, 10))
	})
	from := max(off, 0)
	read = fmt.Sprintf("%d of %d bytes read", end-from, fi.Size())
	if off <= 0 {
		return "", read, err
	}
	return strconv.FormatInt(off, 10), read, err
}

// Search returns up to q.Limit lines of src that match q, newest first.
func Search(ctx context.Context, src Source, q Query) (Page, error) {
	if q.Limit < 1 || q.Limit > maxPageSize {
		q.Limit = maxPageSize
	}
	var p Page
	var e Entry
	older := false
	// A line of the login holds it as written when it needs no quoting:
	// most lines are skipped without being parsed.
	var needle []byte
	if q.Login != "" && strconv.Quote(q.Login) == `"`+q.Login+`"` && !strings.ContainsAny(q.Login, " =") {
		needle = []byte("login=" + q.Login)
	}
	next, read, err := src.backward(ctx, q.Before, q.From, func(line []byte, pos string) bool {
		if !q.From.IsZero() {
			if t, ok := lineTime(line); ok && t.Before(q.From.Add(-time.Second)) {
				older = true
				return false // the log is in time order (give or take the write buffer): nothing older matches
			}
		}
		if needle != nil && !bytes.Contains(line, needle) {
			return true
		}
		if ParseLine(line, &e) != nil {
			return true
		}
		if q.match(&e) {
			e.Pos = pos
			p.Entries = append(p.Entries, e)
		}
		return len(p.Entries) < q.Limit
	})
	p.Next, p.Read = next, read
	if older {
		p.Next = ""
	}
	return p, err
}

// scanBackward calls fn with each line of f that ends at or before end,
// last line first, with its offset, until fn returns false or budget bytes
// were read. It returns the offset of the last line given to fn (where to
// go on), or -1 when it reached the start of the file. A line longer than
// maxLineLen is skipped; a last line without its newline is given too.
func scanBackward(f io.ReaderAt, end, budget int64, fn func(line []byte, off int64) bool) (int64, error) {
	pos := end        // file offset of the chunk read last
	var carry []byte  // the bytes from pos up to the first newline: the end of a line that starts before pos
	skipping := false // that line is too long
	read := int64(0)
	// Two buffers in turn: a chunk and the carry from the one before (in
	// the other buffer) side by side. fn's line is valid during the call.
	var bufs [2][]byte
	for k := range bufs {
		bufs[k] = make([]byte, 0, readChunk+maxLineLen)
	}
	for turn := 0; pos > 0; turn ^= 1 {
		if read >= budget {
			return pos + int64(len(carry)), nil
		}
		n := int64(readChunk)
		if n > pos {
			n = pos
		}
		pos -= n
		buf := bufs[turn][:n]
		if _, err := f.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return pos + n, err
		}
		read += n
		buf = append(buf, carry...)
		// Lines whose start is in this chunk: after each '\n' from the end.
		for {
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 {
				break
			}
			line := buf[i+1:]
			off := pos + int64(i) + 1
			if len(bytes.TrimSpace(line)) > 0 && !skipping {
				if !fn(line, off) {
					return off, nil
				}
			}
			skipping = false
			buf = buf[:i]
		}
		carry = buf
		if len(carry) > maxLineLen {
			carry, skipping = nil, true
		}
	}
	if len(carry) > 0 && !skipping && len(bytes.TrimSpace(carry)) > 0 {
		if !fn(carry, 0) {
			return 0, nil
		}
	}
	return -1, nil
}
