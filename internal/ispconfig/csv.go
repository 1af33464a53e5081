package ispconfig

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ReadCSV reads restriction rows from a table with a header line naming
// the columns email (or login), ip, mode and service, in any order and
// any case; restriction_id is optional and other columns are ignored.
//
// The delimiter is taken from the header line: a tab means the output of
// `mysql -B` (fields unquoted, \t \n \\ \0 escaped, NULL for null), as
// made by
//
//	mysql -B -e "SELECT r.restriction_id, m.email, r.ip, r.mode, r.service
//	  FROM mail_user_ip_restriction r JOIN mail_user m USING (mailuser_id)" dbispconfig
//
// otherwise a comma or semicolon means a CSV file (RFC 4180 quoting), as
// exported by phpMyAdmin or a spreadsheet. Errors name the line.
func ReadCSV(r io.Reader) ([]Row, error) { return readCSVLimited(r, defaultLimits()) }

func readCSVLimited(r io.Reader, lim limits) ([]Row, error) {
	lr := &limitReader{r: r, max: lim.input}
	br := bufio.NewReaderSize(&lineLimitReader{r: lr, max: lim.line}, lim.line+1)

	// Look at the header line without consuming it. A problem further
	// on (a line too long) is reported later, by the reader, with its line.
	header, err := br.Peek(br.Size())
	if i := bytes.IndexByte(header, '\n'); i >= 0 {
		header = header[:i]
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if bytes.HasPrefix(header, []byte("\xef\xbb\xbf")) { // a UTF-8 BOM, as Windows tools write
		header = header[3:]
		br.Discard(3)
	}
	if len(bytes.TrimSpace(header)) == 0 {
		return nil, errors.New("line 1: no header line (want columns email, ip, mode, service)")
	}
	var d byte
	switch {
	case bytes.IndexByte(header, '\t') >= 0:
		return readTSV(br, lim.rows)
	case bytes.Count(header, []byte{';'}) > bytes.Count(header, []byte{','}):
		d = ';'
	case bytes.IndexByte(header, ',') >= 0:
		d = ','
	default:
		return nil, fmt.Errorf("line 1: header %q has no tab, comma or semicolon between column names", truncate(string(header), 80))
	}
	return readCSV(br, rune(d), lim.rows)
}

// columns maps the wanted columns to their index in a record.
type columns struct {
	email, ip, mode, service, id int // -1: absent
	n                            int // number of columns in the header
}

func parseHeader(fields []string) (columns, error) {
	c := columns{email: -1, ip: -1, mode: -1, service: -1, id: -1, n: len(fields)}
	login := -1
	for i, f := range fields {
		name := strings.ToLower(strings.TrimSpace(f))
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff")
		}
		// "r.ip" or "`ip`" as some tools write them
		name = strings.Trim(name, "`\"")
		if j := strings.LastIndexByte(name, '.'); j >= 0 {
			name = name[j+1:]
		}
		var p *int
		switch name {
		case "email":
			p = &c.email
		case "login":
			p = &login
		case "ip":
			p = &c.ip
		case "mode":
			p = &c.mode
		case "service":
			p = &c.service
		case "restriction_id":
			p = &c.id
		default:
			continue
		}
		if *p >= 0 {
			return c, fmt.Errorf("line 1: column %q appears twice", name)
		}
		*p = i
	}
	if c.email < 0 {
		c.email = login
	}
	var missing []string
	for _, m := range []struct {
		name string
		i    int
	}{{"email (or login)", c.email}, {"ip", c.ip}, {"mode", c.mode}, {"service", c.service}} {
		if m.i < 0 {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("line 1: header lacks column %s (have %s)", strings.Join(missing, ", "), truncate(strings.Join(fields, ","), 120))
	}
	return c, nil
}

// row builds a Row from a record; null tells whether field i was NULL.
func (c columns) row(fields []string, null func(i int) bool, line int) (Row, error) {
	if len(fields) != c.n {
		return Row{}, fmt.Errorf("line %d: %d fields, the header has %d", line, len(fields), c.n)
	}
	for _, f := range []struct {
		name string
		i    int
	}{{"email", c.email}, {"ip", c.ip}, {"mode", c.mode}, {"service", c.service}} {
		if null(f.i) {
			return Row{}, fmt.Errorf("line %d: %s is NULL", line, f.name)
		}
	}
	row := Row{
		Email:   strings.TrimSpace(fields[c.email]),
		IP:      strings.TrimSpace(fields[c.ip]),
		Mode:    strings.TrimSpace(fields[c.mode]),
		Service: strings.TrimSpace(fields[c.service]),
		Line:    line,
	}
	if c.id >= 0 && !null(c.id) {
		s := strings.TrimSpace(fields[c.id])
		if s != "" {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil || id < 0 {
				return Row{}, fmt.Errorf("line %d: restriction_id %q is not a number", line, truncate(s, 40))
			}
			row.RestrictionID = id
		}
	}
	if row.Email == "" {
		return Row{}, fmt.Errorf("line %d: empty email", line)
	}
	return row, nil
}

func readCSV(br *bufio.Reader, comma rune, maxRows int) ([]Row, error) {
	cr := csv.NewReader(br)
	cr.Comma = comma
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("line 1: %w", err)
	}
	cols, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	var rows []Row
	var errs errorList
	notNull := func(int) bool { return false }
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// csv.ParseError names the line; a read error (too large)
			// ends the input.
			var pe *csv.ParseError
			if errors.As(err, &pe) && pe.Err != nil && !isLimitErr(pe.Err) {
				errs.add(err)
				continue
			}
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		row, err := cols.row(rec, notNull, line)
		if err != nil {
			errs.add(err)
			continue
		}
		if len(rows) >= maxRows {
			return nil, fmt.Errorf("line %d: more than %d rows", line, maxRows)
		}
		rows = append(rows, row)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// readTSV reads the output of mysql --batch: tab-separated, no quoting,
// with \0 \b \n \r \t \Z \\ escaped and NULL for a null value.
func readTSV(br *bufio.Reader, maxRows int) ([]Row, error) {
	var (
		rows []Row
		errs errorList
		cols columns
		line int
	)
	for {
		text, err := br.ReadString('\n')
		if text == "" && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err // a limit error, naming its line
		}
		line++
		text = strings.TrimSuffix(strings.TrimSuffix(text, "\n"), "\r")
		if line == 1 {
			cols, err = parseHeader(strings.Split(text, "\t"))
			if err != nil {
				return nil, err
			}
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		raw := strings.Split(text, "\t")
		fields := make([]string, len(raw))
		for i, f := range raw {
			fields[i] = unescapeBatch(f)
		}
		null := func(i int) bool { return raw[i] == "NULL" }
		row, rerr := cols.row(fields, null, line)
		if rerr != nil {
			errs.add(rerr)
			continue
		}
		if len(rows) >= maxRows {
			return nil, fmt.Errorf("line %d: more than %d rows", line, maxRows)
		}
		rows = append(rows, row)
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if line == 0 {
		return nil, errors.New("line 1: no header line")
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// unescapeBatch undoes mysql --batch escaping.
func unescapeBatch(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'Z':
			b.WriteByte(0x1a)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// limitReader fails with errTooLarge once more than max bytes were read.
type limitReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, l.tooLarge()
	}
	if rem := l.max + 1 - l.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return n, l.tooLarge()
	}
	return n, err
}

func (l *limitReader) tooLarge() error {
	if l.max >= 1<<20 {
		return fmt.Errorf("%w (%d MiB)", errTooLarge, l.max>>20)
	}
	return fmt.Errorf("%w (%d bytes)", errTooLarge, l.max)
}

// errTooLarge is returned (wrapped) past the input limit.
var errTooLarge = errors.New("input too large")

// errLineTooLong is returned (wrapped, with the line) by lineLimitReader.
var errLineTooLong = errors.New("line too long")

func isLimitErr(err error) bool {
	return errors.Is(err, errLineTooLong) || errors.Is(err, errTooLarge)
}

// lineLimitReader fails with errLineTooLong when a line exceeds max
// bytes, so one endless line cannot fill memory.
type lineLimitReader struct {
	r    io.Reader
	err  error // sticky
	cur  int   // bytes since the last newline
	line int   // lines seen, 0-based
	max  int
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			l.cur = 0
			l.line++
			continue
		}
		l.cur++
		if l.cur > l.max {
			l.err = fmt.Errorf("line %d: %w (limit %d bytes)", l.line+1, errLineTooLong, l.max)
			return i, l.err
		}
	}
	return n, err
}
