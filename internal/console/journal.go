package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of one journal read.
const (
	maxJournalLines = 200000 // entries read per page at most
	maxJournalLine  = 64 << 10
	journalTimeout  = 20 * time.Second
)

var cursorRE = regexp.MustCompile(`^[A-Za-z0-9;=_-]{1,512}$`)

// journalBackward runs journalctl (args: the program and its selecting
// arguments) newest entry first, after the cursor when one is given, and
// calls fn with each entry's MESSAGE and cursor until fn returns false or
// maxJournalLines were read; journalctl is then stopped (killed by its PID
// through the context). It returns the cursor to go on from ("" when the
// journal's start was reached) and the entries read.
func journalBackward(ctx context.Context, args []string, after string, since time.Time, fn func(line []byte, cursor string) bool) (string, int64, error) {
	a := append(slices.Clone(args[1:]), "--output=json", "--all", "--reverse", "--no-pager", "--quiet")
	if after != "" {
		if !cursorRE.MatchString(after) {
			return "", 0, errors.New("before: not a journal cursor")
		}
		a = append(a, "--after-cursor="+after)
	}
	if !since.IsZero() {
		a = append(a, "--since=@"+strconv.FormatInt(since.Unix()-2, 10))
	}
	ctx, cancel := context.WithTimeout(ctx, journalTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], a...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, fmt.Errorf("reading the journal: %w", err)
	}
	stopped := false
	defer func() {
		if stopped {
			cancel() // exec kills journalctl by its PID
		}
		cmd.Wait() //nolint:errcheck // reported below when it matters
	}()
	r := bufio.NewReaderSize(out, 64<<10)
	var n int64
	var rec struct {
		Cursor  string          `json:"__CURSOR"`
		Message json.RawMessage `json:"MESSAGE"`
	}
	for {
		line, err := readLine(r, maxJournalLine)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			stopped = true
			return "", n, fmt.Errorf("reading the journal: %w", err)
		}
		if line == nil {
			continue // too long: not a decision line
		}
		rec.Cursor, rec.Message = "", nil
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		n++
		var msg string
		if json.Unmarshal(rec.Message, &msg) == nil && !fn([]byte(msg), rec.Cursor) {
			stopped = true
			return rec.Cursor, n, nil
		}
		if n >= maxJournalLines {
			stopped = true
			return rec.Cursor, n, nil
		}
	}
	if err := cmd.Wait(); err != nil && n == 0 {
		return "", 0, fmt.Errorf("journalctl: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return "", n, nil
}

// readLine returns the next line without its newline, or nil for a line
// longer than max (skipped whole).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	long := false
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			long, buf = true, nil
		} else if !long {
			buf = append(buf, frag...)
		}
		switch {
		case err == nil:
			if long {
				return nil, nil
			}
			return bytes.TrimRight(buf, "\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0 && !long:
			return buf, nil
		default:
			return nil, err
		}
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k]) //nolint:errcheck // a bytes.Buffer
		l.n -= k
	}
	return len(b), nil
}
