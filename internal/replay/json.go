package replay

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The fields of an events line.
const (
	fTime = iota
	fDoor
	fService
	fLogin
	fAddress
	fPwHash
	fResult
	fActor
	numFields
)

var fieldNames = [numFields]string{"time", "door", "service", "login", "address", "pwhash", "result", "actor"}

// wireEvent is an events line as read: each field's string value and
// which fields were present. A field given as null counts as absent.
type wireEvent struct {
	v    [numFields][]byte // into the line, or a buffer of its own when the value has escapes
	seen uint16            // bit i: field i named (null included), to refuse duplicates
	set  uint16            // bit i: field i has a string value
}

func (w *wireEvent) has(f int) bool { return w.set&(1<<f) != 0 }

// parse reads one flat JSON object whose values are strings or null: the
// whole of the events format. It is a small hand-written parser (the
// replay of a million lines spends its time here with encoding/json)
// and is stricter than encoding/json: a field named twice, a value that
// is not a string or null, invalid UTF-8, and anything after the object
// but white space are errors.
func (w *wireEvent) parse(b []byte) error {
	p := jsonParser{b: b}
	p.space()
	if !p.eat('{') {
		return errors.New("not a JSON object (each line is one {...} object)")
	}
	p.space()
	if p.eat('}') {
		return p.end()
	}
	for {
		p.space()
		start := p.i
		kb, err := p.str()
		if err != nil {
			return fmt.Errorf("at byte %d: a field name: %w", start+1, err)
		}
		f := -1
		for i, n := range fieldNames {
			if string(kb) == n {
				f = i
			}
		}
		key := fieldNames[max(f, 0)]
		if f < 0 {
			return fmt.Errorf("unknown field %s (want time, door, service, login, address, pwhash, result, actor)", strconv.Quote(clip(string(kb))))
		}
		if w.seen&(1<<f) != 0 {
			return fmt.Errorf("%s: given twice", key)
		}
		w.seen |= 1 << f
		p.space()
		if !p.eat(':') {
			return fmt.Errorf("at byte %d: want ':' after %q", p.i+1, key)
		}
		p.space()
		if p.word("null") {
			// absent
		} else if p.i < len(p.b) && p.b[p.i] == '"' {
			s, err := p.str()
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			w.v[f] = s
			w.set |= 1 << f
		} else {
			return fmt.Errorf("%s: must be a string (in double quotes)", key)
		}
		p.space()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return p.end()
		}
		return fmt.Errorf("at byte %d: want ',' or '}'", p.i+1)
	}
}

type jsonParser struct {
	b []byte
	i int
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonParser) word(w string) bool {
	if len(p.b)-p.i >= len(w) && string(p.b[p.i:p.i+len(w)]) == w {
		p.i += len(w)
		return true
	}
	return false
}

// end checks that only white space follows the object.
func (p *jsonParser) end() error {
	p.space()
	if p.i != len(p.b) {
		return fmt.Errorf("at byte %d: more after the object's end (one object per line)", p.i+1)
	}
	return nil
}

// str reads a JSON string at p.i: a slice of the input when it has no
// escapes.
func (p *jsonParser) str() ([]byte, error) {
	if !p.eat('"') {
		return nil, errors.New("want a string in double quotes")
	}
	start := p.i
	// The common case: no escapes, plain ASCII or valid UTF-8.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return nil, errors.New("not valid UTF-8")
			}
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, errors.New("a control character inside a string (escape it)")
		}
		p.i++
	}
	buf := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(buf) {
				return nil, errors.New("not valid UTF-8")
			}
			return buf, nil
		case c < 0x20:
			return nil, errors.New("a control character inside a string (escape it)")
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.b) {
			break
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, errors.New("a bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if p.word(`\u`) {
					if r2, ok = p.hex4(); !ok {
						return nil, errors.New("a bad \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return nil, errors.New("a lone UTF-16 surrogate in a \\u escape")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return nil, fmt.Errorf("a bad escape \\%c", e)
		}
	}
	return nil, errors.New("the string is not closed")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
