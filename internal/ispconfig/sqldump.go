package ispconfig

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The tables ReadSQLDump reads; all others are skipped.
const (
	tableUser        = "mail_user"
	tableRestriction = "mail_user_ip_restriction"
)

// defaultUserColumns is the start of mail_user's column order in every
// ISPConfig 3 schema (install/sql/ispconfig3.sql, 3.0 to 3.2): mailuser_id
// is column 0 and email column 7. It is used only for INSERTs without a
// column list in a dump without the CREATE TABLE.
var defaultUserColumns = []string{"mailuser_id", "sys_userid", "sys_groupid",
	"sys_perm_user", "sys_perm_group", "sys_perm_other", "server_id", "email"}

// defaultRestrictionColumns is the table as the howto creates it.
var defaultRestrictionColumns = []string{"restriction_id", "mailuser_id", "ip", "mode", "service"}

// maxTupleValues bounds the values of one row of an INSERT.
const maxTupleValues = 4096

// ReadSQLDump reads a mysqldump (or phpMyAdmin SQL export) file and
// returns the rows of its `mail_user_ip_restriction` INSERTs joined with
// the email of their `mail_user` rows; other tables and statements are
// skipped.
//
// INSERTs may carry many rows and may or may not list their columns. The
// column order comes from the INSERT's column list, else from the dump's
// CREATE TABLE, else from the ISPConfig 3 schema (mail_user: mailuser_id
// first, email eighth; mail_user_ip_restriction as the howto creates it);
// when none of these fits, the error asks for a dump made with
// `mysqldump --complete-insert`. MySQL string syntax is understood
// ('...' and "..." with backslash escapes and doubled quotes, x'..' and
// 0x.. hex, _charset introducers, NULL, numbers, comments, DELIMITER).
//
// A restriction whose mailuser_id has no mail_user row is an error naming
// its line. On any error no rows are returned; the error lists up to 20
// problems.
func ReadSQLDump(r io.Reader) ([]Row, error) { return readSQLDumpLimited(r, defaultLimits()) }

func readSQLDumpLimited(r io.Reader, lim limits) ([]Row, error) {
	p := &dumpParser{
		sc:    newScanner(r, lim),
		users: map[uint64]userRow{},
		cols:  map[string][]string{},
	}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.join()
}

type userRow struct {
	email string
	line  int
}

type restrictionRow struct {
	Row
	mailuserID uint64
}

type dumpParser struct {
	sc           *scanner
	users        map[uint64]userRow
	restrictions []restrictionRow
	cols         map[string][]string // from CREATE TABLE, by table
	sawTable     bool                // a CREATE TABLE or INSERT for the restriction table
	errs         errorList
}

func (p *dumpParser) parse() error {
	for {
		if p.sc.delim != ";" {
			if err := p.sc.skipToDelimiter(); err != nil {
				return err
			}
			continue
		}
		t, err := p.sc.next(false)
		if err != nil {
			return err
		}
		switch {
		case t.kind == tEOF:
			return nil
		case t.kind == tPunct && t.text == ";":
			continue
		case t.isWord("INSERT"), t.isWord("REPLACE"):
			err = p.insert(t.line)
		case t.isWord("CREATE"):
			err = p.create()
		case t.isWord("DELIMITER"):
			err = p.sc.readDelimiter()
		default:
			err = p.skipStatement()
		}
		if err != nil {
			return err
		}
	}
}

// skipStatement skips to the end of the current statement.
func (p *dumpParser) skipStatement() error {
	for {
		t, err := p.sc.next(false)
		if err != nil {
			return err
		}
		if t.kind == tEOF || (t.kind == tPunct && t.text == ";") {
			return nil
		}
	}
}

// tableName reads a possibly qualified table name (`db`.`table`) and
// returns the table part, lower-cased.
func (p *dumpParser) tableName() (string, token, error) {
	t, err := p.sc.next(true)
	if err != nil {
		return "", t, err
	}
	if t.kind != tWord && t.kind != tIdent {
		return "", t, nil
	}
	name := t.text
	for {
		nt, err := p.sc.peekPunct('.')
		if err != nil {
			return "", t, err
		}
		if !nt {
			break
		}
		if t, err = p.sc.next(true); err != nil {
			return "", t, err
		}
		if t.kind != tWord && t.kind != tIdent {
			return "", t, p.sc.errorf(t.line, "bad table name after '.'")
		}
		name = t.text
	}
	return strings.ToLower(name), t, nil
}

func (p *dumpParser) wanted(table string) bool {
	return table == tableUser || table == tableRestriction
}

// create handles CREATE TABLE of the two tables: it records their column
// order.
func (p *dumpParser) create() error {
	t, err := p.sc.next(false)
	if err != nil {
		return err
	}
	// CREATE [OR REPLACE] [TEMPORARY] TABLE
	for t.isWord("OR") || t.isWord("REPLACE") || t.isWord("TEMPORARY") {
		if t, err = p.sc.next(false); err != nil {
			return err
		}
	}
	if !t.isWord("TABLE") {
		return p.skipStatement()
	}
	table, t, err := p.tableName()
	if err != nil {
		return err
	}
	for t.isWord("IF") || t.isWord("NOT") || t.isWord("EXISTS") {
		if table, t, err = p.tableName(); err != nil {
			return err
		}
	}
	if !p.wanted(table) {
		return p.skipStatement()
	}
	if table == tableRestriction {
		p.sawTable = true
	}
	if t, err = p.sc.next(false); err != nil {
		return err
	}
	if t.kind != tPunct || t.text != "(" {
		return p.skipStatement() // CREATE TABLE x LIKE y, AS SELECT ...
	}
	var cols []string
	for {
		// one column or index definition
		t, err := p.sc.next(true)
		if err != nil {
			return err
		}
		if t.kind == tEOF {
			return p.sc.errorf(t.line, "CREATE TABLE %s: unexpected end of input", table)
		}
		switch {
		case t.kind == tIdent:
			cols = append(cols, strings.ToLower(t.text))
		case t.kind == tWord && !isIndexKeyword(t.text):
			cols = append(cols, strings.ToLower(t.text))
		}
		// skip to the ',' or ')' that ends the definition
		depth := 0
		done := false
		for !done {
			t, err = p.sc.next(false)
			if err != nil {
				return err
			}
			switch {
			case t.kind == tEOF:
				return p.sc.errorf(t.line, "CREATE TABLE %s: unexpected end of input", table)
			case t.kind != tPunct:
			case t.text == "(":
				depth++
			case t.text == ")" && depth > 0:
				depth--
			case t.text == ")":
				p.cols[table] = cols
				return p.skipStatement()
			case t.text == "," && depth == 0:
				done = true
			}
		}
	}
}

func isIndexKeyword(w string) bool {
	switch strings.ToUpper(w) {
	case "PRIMARY", "KEY", "INDEX", "UNIQUE", "CONSTRAINT", "FOREIGN", "FULLTEXT", "SPATIAL", "CHECK", "PERIOD":
		return true
	}
	return false
}

// insert handles INSERT/REPLACE; the keyword has been read.
func (p *dumpParser) insert(line int) error {
	var table string
	var t token
	var err error
	for {
		if table, t, err = p.tableName(); err != nil {
			return err
		}
		if t.kind == tWord && isInsertModifier(t.text) {
			continue
		}
		break
	}
	if !p.wanted(table) {
		return p.skipStatement()
	}
	if table == tableRestriction {
		p.sawTable = true
	}
	var cols []string
	explicit := false
	if t, err = p.sc.next(true); err != nil {
		return err
	}
	if t.kind == tPunct && t.text == "(" {
		explicit = true
		for {
			if t, err = p.sc.next(true); err != nil {
				return err
			}
			if t.kind != tWord && t.kind != tIdent {
				return p.sc.errorf(t.line, "INSERT INTO %s: bad column list", table)
			}
			cols = append(cols, strings.ToLower(t.text))
			if len(cols) > maxTupleValues {
				return p.sc.errorf(t.line, "INSERT INTO %s: more than %d columns", table, maxTupleValues)
			}
			if t, err = p.sc.next(false); err != nil {
				return err
			}
			if t.kind == tPunct && t.text == ")" {
				break
			}
			if t.kind != tPunct || t.text != "," {
				return p.sc.errorf(t.line, "INSERT INTO %s: bad column list", table)
			}
		}
		if t, err = p.sc.next(false); err != nil {
			return err
		}
	}
	if !t.isWord("VALUES") && !t.isWord("VALUE") {
		return p.sc.errorf(t.line, "INSERT INTO %s on line %d: only INSERT ... VALUES is supported", table, line)
	}
	m, err := p.mapping(table, cols, explicit, line)
	if err != nil {
		return err
	}
	for {
		if t, err = p.sc.next(false); err != nil {
			return err
		}
		if t.kind != tPunct || t.text != "(" {
			return p.sc.errorf(t.line, "INSERT INTO %s: want '(' to start a row", table)
		}
		vals, err := p.tuple(table)
		if err != nil {
			return err
		}
		if err := p.row(table, m, vals, t.line); err != nil {
			return err
		}
		if t, err = p.sc.next(false); err != nil {
			return err
		}
		switch {
		case t.kind == tPunct && t.text == ",":
			continue
		case t.kind == tEOF || t.kind == tPunct && t.text == ";":
			return nil
		case t.isWord("ON") || t.isWord("AS"): // ON DUPLICATE KEY UPDATE ...
			return p.skipStatement()
		default:
			return p.sc.errorf(t.line, "INSERT INTO %s: unexpected %q after a row", table, t.text)
		}
	}
}

func isInsertModifier(w string) bool {
	switch strings.ToUpper(w) {
	case "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO":
		return true
	}
	return false
}

// colMap says which value of a row holds which field; -1 when absent.
type colMap struct {
	n                                   int // values per row; 0: at least minN
	minN                                int
	guessed                             bool // the order is ISPConfig's, not the dump's
	id, mailuser, email, ip, mode, serv int
}

// mapping finds the fields' positions for an INSERT into table.
func (p *dumpParser) mapping(table string, cols []string, explicit bool, line int) (colMap, error) {
	source := "column list"
	if !explicit {
		if c, ok := p.cols[table]; ok {
			cols, source = c, "CREATE TABLE"
		}
	}
	index := func(name string) int {
		for i, c := range cols {
			if c == name {
				return i
			}
		}
		return -1
	}
	m := colMap{id: -1, mailuser: -1, email: -1, ip: -1, mode: -1, serv: -1}
	if !explicit && cols == nil {
		// No column list, no CREATE TABLE: assume ISPConfig's order.
		source = "ISPConfig 3 column order"
		m.guessed = true
		if table == tableUser {
			cols = defaultUserColumns
			m.minN = len(defaultUserColumns)
		} else {
			cols = defaultRestrictionColumns
			m.n = len(cols)
		}
	} else {
		m.n = len(cols)
	}
	m.mailuser = index("mailuser_id")
	var need []string
	if table == tableUser {
		m.email = index("email")
		if m.email < 0 {
			need = append(need, "email")
		}
	} else {
		m.id = index("restriction_id")
		m.ip, m.mode, m.serv = index("ip"), index("mode"), index("service")
		for _, f := range []struct {
			name string
			i    int
		}{{"ip", m.ip}, {"mode", m.mode}, {"service", m.serv}} {
			if f.i < 0 {
				need = append(need, f.name)
			}
		}
	}
	if m.mailuser < 0 {
		need = append([]string{"mailuser_id"}, need...)
	}
	if len(need) > 0 {
		return m, p.sc.errorf(line, "INSERT INTO %s: the %s has no column %s", table, source, strings.Join(need, ", "))
	}
	return m, nil
}

// value is one literal of a row.
type value struct {
	text string
	null bool
	num  bool
}

// tuple reads the values of one row; the '(' has been read.
func (p *dumpParser) tuple(table string) ([]value, error) {
	var vals []value
	for {
		v, err := p.value(table)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		if len(vals) > maxTupleValues {
			return nil, p.sc.errorf(p.sc.line, "INSERT INTO %s: a row with more than %d values", table, maxTupleValues)
		}
		t, err := p.sc.next(false)
		if err != nil {
			return nil, err
		}
		if t.kind == tPunct && t.text == ")" {
			return vals, nil
		}
		if t.kind != tPunct || t.text != "," {
			return nil, p.sc.errorf(t.line, "INSERT INTO %s: want ',' or ')' between values, not %q", table, t.text)
		}
	}
}

// value reads one literal.
func (p *dumpParser) value(table string) (value, error) {
	t, err := p.sc.next(true)
	if err != nil {
		return value{}, err
	}
	sign := ""
	if t.kind == tPunct && (t.text == "-" || t.text == "+") {
		sign = t.text
		if t, err = p.sc.next(true); err != nil {
			return value{}, err
		}
		if t.kind != tNumber {
			return value{}, p.sc.errorf(t.line, "INSERT INTO %s: want a number after %q", table, sign)
		}
	}
	switch t.kind {
	case tString:
		return value{text: t.text}, nil
	case tNumber:
		if len(t.text) > 2 && (t.text[:2] == "0x" || t.text[:2] == "0X") && sign == "" {
			b, err := hex.DecodeString(t.text[2:])
			if err != nil {
				return value{}, p.sc.errorf(t.line, "INSERT INTO %s: bad hex literal", table)
			}
			return value{text: string(b)}, nil
		}
		return value{text: sign + t.text, num: true}, nil
	case tWord:
		w := strings.ToUpper(t.text)
		switch {
		case w == "NULL":
			return value{null: true}, nil
		case w == "TRUE":
			return value{text: "1", num: true}, nil
		case w == "FALSE":
			return value{text: "0", num: true}, nil
		case w == "X" || w == "N" || strings.HasPrefix(w, "_"):
			s, err := p.sc.next(true)
			if err != nil {
				return value{}, err
			}
			if s.kind != tString {
				return value{}, p.sc.errorf(s.line, "INSERT INTO %s: want a string after %s", table, t.text)
			}
			if w != "X" {
				return value{text: s.text}, nil
			}
			b, err := hex.DecodeString(s.text)
			if err != nil {
				return value{}, p.sc.errorf(s.line, "INSERT INTO %s: bad hex literal", table)
			}
			return value{text: string(b)}, nil
		}
	}
	return value{}, p.sc.errorf(t.line, "INSERT INTO %s: %q is not a literal value", table, truncate(t.text, 40))
}

// row records one row of table.
func (p *dumpParser) row(table string, m colMap, vals []value, line int) error {
	if m.n > 0 && len(vals) != m.n {
		if m.guessed {
			return p.sc.errorf(line, "INSERT INTO %s without a column list and no CREATE TABLE in the dump: its %d values do not fit the howto's column order (%s); dump with mysqldump --complete-insert",
				table, len(vals), strings.Join(defaultRestrictionColumns, ", "))
		}
		p.errs.add(fmt.Errorf("line %d: %s row has %d values, want %d", line, table, len(vals), m.n))
		return nil
	}
	if len(vals) < m.minN {
		return p.sc.errorf(line, "INSERT INTO %s without a column list and no CREATE TABLE in the dump: its %d values do not fit ISPConfig's column order; dump with mysqldump --complete-insert", table, len(vals))
	}
	mid, err := uintValue(vals[m.mailuser])
	if err != nil {
		p.errs.add(fmt.Errorf("line %d: %s: mailuser_id: %w", line, table, err))
		return nil
	}
	str := func(name string, i int) (string, error) {
		v := vals[i]
		if v.null {
			return "", fmt.Errorf("line %d: %s: %s is NULL", line, table, name)
		}
		return v.text, nil
	}
	if table == tableUser {
		email, err := str("email", m.email)
		if err != nil {
			p.errs.add(err)
			return nil
		}
		if m.minN > 0 && !strings.Contains(email, "@") {
			return p.sc.errorf(line, "INSERT INTO %s without a column list and no CREATE TABLE in the dump: column 8 is %q, not an email address, so this is not ISPConfig 3's column order; dump with mysqldump --complete-insert", table, truncate(email, 40))
		}
		email = strings.TrimSpace(email)
		if prev, ok := p.users[mid]; ok && prev.email != email {
			p.errs.add(fmt.Errorf("line %d: mail_user %d is %q, but line %d says %q", line, mid, email, prev.line, prev.email))
			return nil
		}
		if len(p.users) >= p.sc.lim.rows {
			return p.sc.errorf(line, "more than %d mail_user rows", p.sc.lim.rows)
		}
		p.users[mid] = userRow{email: email, line: line}
		return nil
	}
	row := restrictionRow{Row: Row{Line: line}, mailuserID: mid}
	for _, f := range []struct {
		name string
		i    int
		dst  *string
	}{{"ip", m.ip, &row.IP}, {"mode", m.mode, &row.Mode}, {"service", m.serv, &row.Service}} {
		if *f.dst, err = str(f.name, f.i); err != nil {
			p.errs.add(err)
			return nil
		}
	}
	if m.id >= 0 && !vals[m.id].null {
		id, err := uintValue(vals[m.id])
		if err == nil && id > 1<<62 {
			err = errors.New("out of range")
		}
		if err != nil {
			p.errs.add(fmt.Errorf("line %d: %s: restriction_id: %w", line, table, err))
			return nil
		}
		row.RestrictionID = int64(id)
	}
	if len(p.restrictions) >= p.sc.lim.rows {
		return p.sc.errorf(line, "more than %d %s rows", p.sc.lim.rows, table)
	}
	p.restrictions = append(p.restrictions, row)
	return nil
}

func uintValue(v value) (uint64, error) {
	if v.null {
		return 0, errors.New("is NULL")
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v.text), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", truncate(v.text, 40))
	}
	return n, nil
}

// join attaches each restriction's email.
func (p *dumpParser) join() ([]Row, error) {
	if !p.sawTable && p.errs.err() == nil {
		return nil, errors.New("the dump has no mail_user_ip_restriction table")
	}
	rows := make([]Row, 0, len(p.restrictions))
	for _, r := range p.restrictions {
		u, ok := p.users[r.mailuserID]
		if !ok {
			p.errs.add(fmt.Errorf("%s: mailuser_id %d has no mail_user row", r.where(), r.mailuserID))
			continue
		}
		r.Email = u.email
		rows = append(rows, r.Row)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// --- scanner ---

type tokKind uint8

const (
	tEOF    tokKind = iota
	tWord           // a bare word: keyword or name
	tIdent          // a `quoted` name
	tString         // '...' or "..."
	tNumber         // 12, 1.5e3, 0x1F
	tPunct          // one other byte
)

type token struct {
	kind tokKind
	text string // for strings and idents only when kept
	line int
}

func (t token) isWord(w string) bool { return t.kind == tWord && strings.EqualFold(t.text, w) }

// scanner splits MySQL SQL into tokens, streaming: it never holds more
// than one literal (MaxValueBytes) in memory.
type scanner struct {
	lim   limits
	r     *bufio.Reader
	line  int
	delim string
	buf   []byte
}

func newScanner(r io.Reader, lim limits) *scanner {
	return &scanner{
		lim:   lim,
		r:     bufio.NewReaderSize(&limitReader{r: r, max: lim.input}, 64<<10),
		line:  1,
		delim: ";",
	}
}

func (s *scanner) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// readByte returns the next byte; ok is false at the end of input, and
// err is set for a read error (the input is too large).
func (s *scanner) readByte() (c byte, ok bool, err error) {
	c, err = s.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("line %d: %w", s.line, err)
	}
	if c == '\n' {
		s.line++
	}
	return c, true, nil
}

// peek returns the next byte without consuming it.
func (s *scanner) peek() (c byte, ok bool, err error) {
	p, err := s.r.Peek(1)
	if len(p) == 1 {
		return p[0], true, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("line %d: %w", s.line, err)
}

// skip consumes n bytes.
func (s *scanner) skip(n int) error {
	for range n {
		if _, _, err := s.readByte(); err != nil {
			return err
		}
	}
	return nil
}

// peekIs reports whether the next bytes are b, without consuming them.
func (s *scanner) peekIs(b string) bool {
	p, _ := s.r.Peek(len(b))
	return string(p) == b
}

// peekPunct consumes the next byte if it is c (no space allowed before
// it, as in `db`.`table`).
func (s *scanner) peekPunct(c byte) (bool, error) {
	n, ok, err := s.peek()
	if err != nil || !ok || n != c {
		return false, err
	}
	_, _, err = s.readByte()
	return true, err
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// atDashComment reports whether the input is at a "-- " comment (two
// dashes and a space or control character, as MySQL wants).
func (s *scanner) atDashComment() bool {
	p, _ := s.r.Peek(3)
	return len(p) >= 2 && p[0] == '-' && p[1] == '-' && (len(p) == 2 || p[2] <= ' ')
}

// skipSpace skips white space and comments.
func (s *scanner) skipSpace() error {
	for {
		c, ok, err := s.peek()
		if err != nil || !ok {
			return err
		}
		switch {
		case isSpace(c):
			s.readByte()
		case c == '#' || c == '-' && s.atDashComment():
			if err := s.skipLine(); err != nil {
				return err
			}
		case c == '/' && s.peekIs("/*"):
			if err := s.skipBlockComment(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func (s *scanner) skipLine() error {
	for {
		c, ok, err := s.readByte()
		if err != nil || !ok || c == '\n' {
			return err
		}
	}
}

// skipBlockComment skips a /* comment */ (also MySQL's /*!40101 ... */,
// which mysqldump uses only for statements we do not need).
func (s *scanner) skipBlockComment() error {
	start := s.line
	if err := s.skip(2); err != nil {
		return err
	}
	var prev byte
	for {
		c, ok, err := s.readByte()
		if err != nil {
			return err
		}
		if !ok {
			return s.errorf(start, "unterminated /* comment")
		}
		if prev == '*' && c == '/' {
			return nil
		}
		prev = c
	}
}

// next returns the next token. keep tells whether the text of strings is
// wanted; when false they are skipped without being held.
func (s *scanner) next(keep bool) (token, error) {
	if err := s.skipSpace(); err != nil {
		return token{}, err
	}
	line := s.line
	c, ok, err := s.readByte()
	if err != nil {
		return token{}, err
	}
	if !ok {
		return token{kind: tEOF, line: line}, nil
	}
	switch {
	case c == '\'' || c == '"':
		text, err := s.quoted(c, keep, true)
		return token{kind: tString, text: text, line: line}, err
	case c == '`':
		text, err := s.quoted(c, true, false)
		return token{kind: tIdent, text: text, line: line}, err
	case c >= '0' && c <= '9' || c == '.' && s.peekDigit():
		text, err := s.number(c)
		return token{kind: tNumber, text: text, line: line}, err
	case isWordByte(c):
		s.buf = append(s.buf[:0], c)
		for {
			c, ok, err := s.peek()
			if err != nil {
				return token{}, err
			}
			if !ok || !isWordByte(c) {
				break
			}
			if len(s.buf) >= s.lim.value {
				return token{}, s.errorf(line, "word longer than %d bytes", s.lim.value)
			}
			s.readByte()
			s.buf = append(s.buf, c)
		}
		return token{kind: tWord, text: string(s.buf), line: line}, nil
	}
	return token{kind: tPunct, text: string(rune(c)), line: line}, nil
}

func (s *scanner) peekDigit() bool {
	c, ok, _ := s.peek()
	return ok && c >= '0' && c <= '9'
}

// number reads a number whose first byte c was read: digits, '.', an
// exponent with its sign, or hex digits after 0x.
func (s *scanner) number(c byte) (string, error) {
	s.buf = append(s.buf[:0], c)
	for {
		c, ok, err := s.peek()
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		last := s.buf[len(s.buf)-1]
		isExpSign := (c == '-' || c == '+') && (last == 'e' || last == 'E') && !strings.HasPrefix(string(s.buf), "0x")
		if !isWordByte(c) && c != '.' && !isExpSign {
			break
		}
		if len(s.buf) >= s.lim.value {
			return "", s.errorf(s.line, "number longer than %d bytes", s.lim.value)
		}
		s.readByte()
		s.buf = append(s.buf, c)
	}
	return string(s.buf), nil
}

// quoted reads a quoted string or name whose opening quote q was read. A
// doubled quote stands for itself; in strings (escapes true) a backslash
// escapes the next byte as MySQL does.
func (s *scanner) quoted(q byte, keep, escapes bool) (string, error) {
	start := s.line
	s.buf = s.buf[:0]
	for {
		c, ok, err := s.readByte()
		if err != nil {
			return "", err
		}
		if !ok {
			return "", s.errorf(start, "unterminated %c quote", q)
		}
		if c == q {
			if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == q {
				s.readByte()
			} else {
				return string(s.buf), nil
			}
		} else if c == '\\' && escapes {
			e, ok, err := s.readByte()
			if err != nil {
				return "", err
			}
			if !ok {
				return "", s.errorf(start, "unterminated %c quote", q)
			}
			switch e {
			case '0':
				c = 0
			case 'b':
				c = '\b'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'Z':
				c = 0x1a
			case '%', '_': // kept with their backslash (for LIKE patterns)
				if keep {
					s.buf = append(s.buf, '\\')
				}
				c = e
			default:
				c = e
			}
		}
		if keep {
			if len(s.buf) >= s.lim.value {
				return "", s.errorf(start, "string longer than %d bytes", s.lim.value)
			}
			s.buf = append(s.buf, c)
		}
	}
}

// readDelimiter reads the rest of a DELIMITER line.
func (s *scanner) readDelimiter() error {
	line := s.line
	var b []byte
	for {
		c, ok, err := s.readByte()
		if err != nil {
			return err
		}
		if !ok || c == '\n' {
			break
		}
		if len(b) > 16 {
			return s.errorf(line, "DELIMITER longer than 16 bytes")
		}
		b = append(b, c)
	}
	d := strings.TrimSpace(string(b))
	if d == "" || strings.ContainsAny(d, " \t'\"`") {
		return s.errorf(line, "bad DELIMITER %q", d)
	}
	s.delim = d
	return nil
}

// skipToDelimiter skips one statement under a DELIMITER other than ';'
// (a stored routine or trigger); a DELIMITER command ends it too.
func (s *scanner) skipToDelimiter() error {
	if err := s.skipSpace(); err != nil {
		return err
	}
	if p, _ := s.r.Peek(10); strings.EqualFold(string(p), "DELIMITER ") {
		if err := s.skip(10); err != nil {
			return err
		}
		return s.readDelimiter()
	}
	for {
		if err := s.skipSpace(); err != nil {
			return err
		}
		if s.peekIs(s.delim) {
			return s.skip(len(s.delim))
		}
		c, ok, err := s.readByte()
		if err != nil {
			return err
		}
		if !ok {
			s.delim = ";" // the end of input ends the statement
			return nil
		}
		if c == '\'' || c == '"' || c == '`' {
			if _, err := s.quoted(c, false, c != '`'); err != nil {
				return err
			}
		}
	}
}
