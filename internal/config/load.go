package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// MaxFileSize bounds a config file. A real one is a few kilobytes.
const MaxFileSize = 1 << 20

// Bounds checked before the TOML parser sees the input: the parser's cost
// grows faster than linearly with the nesting of arrays and inline tables
// and with the number of parts of a dotted key, and no key of this file
// comes near either bound.
const (
	maxNesting  = 8 // levels of [ and { in values
	maxKeyParts = 8 // dots in one dotted key
)

// maxProblems bounds how many problems one error lists, so a file of
// garbage does not produce a screenful per line.
const maxProblems = 50

// Error is every problem found in one configuration. Load and Parse
// return it (as error) when a file is refused, Validate when values are.
type Error struct {
	File     string  // the file, "" for Parse and Validate
	Problems []error // each usually a *KeyError; syntax errors are not
	Omitted  int     // problems found beyond those listed
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if len(e.Problems) == 1 && e.Omitted == 0 {
		b.WriteString(e.Problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:", len(e.Problems)+e.Omitted)
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\n\t(and %d more)", e.Omitted)
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *Error) Unwrap() []error { return e.Problems }

func (e *Error) add(err error) {
	if len(e.Problems) >= maxProblems {
		e.Omitted++
		return
	}
	e.Problems = append(e.Problems, err)
}

// err returns e as an error, or nil when it holds no problem.
func (e *Error) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// KeyError is a problem with one key of the file.
type KeyError struct {
	Key  string // the key path as written in TOML, e.g. policy.trusted_networks[2]
	Line int    // 1-based, 0 when unknown
	Err  error
}

func (e *KeyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %v", e.Key, e.Line, e.Err)
	}
	return e.Key + ": " + e.Err.Error()
}

func (e *KeyError) Unwrap() error { return e.Err }

// Load reads, decodes and validates the config file at path. Keys the file
// does not set keep their Default() values.
func Load(path string) (Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return Config{}, err
	}
	cfg, err := Parse(data)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
			return Config{}, ce
		}
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Problems: []error{errTooLarge}}
	}
	return data, nil
}

var errTooLarge = fmt.Errorf("file is larger than %d bytes (1 MiB)", MaxFileSize)

// LoadOrDefault loads the file at path. With path "", it loads DefaultPath
// if that file exists and otherwise returns Default() with used "". used is
// the file the configuration came from. An explicit path that does not
// exist is an error.
func LoadOrDefault(path string) (cfg Config, used string, err error) {
	return loadOrDefault(path, DefaultPath)
}

func loadOrDefault(path, defaultPath string) (Config, string, error) {
	if path == "" {
		if _, err := os.Stat(defaultPath); errors.Is(err, fs.ErrNotExist) {
			return Default(), "", nil
		}
		// Any other Stat error (permissions) surfaces from Load.
		path = defaultPath
	}
	cfg, err := Load(path)
	if err != nil {
		return Config{}, "", err
	}
	return cfg, path, nil
}

// Parse decodes TOML onto Default() and validates the result. It reports
// every unknown key, or the first type or syntax error together with the
// unknown keys, or every invalid value. A returned error is an *Error.
func Parse(data []byte) (Config, error) {
	if len(data) > MaxFileSize {
		return Config{}, &Error{Problems: []error{errTooLarge}}
	}
	if err := checkShape(data); err != nil {
		return Config{}, &Error{Problems: []error{err}}
	}
	cfg := Default()
	md, decErr := toml.Decode(string(data), &cfg)
	var problems Error
	var pe toml.ParseError
	if errors.As(decErr, &pe) && md.Keys() == nil {
		// A syntax error: the parser gave up before the decoder ran, and
		// the returned MetaData is empty.
		problems.add(syntaxError(pe))
		return Config{}, &problems
	}
	// Unknown keys are reported also when decoding stopped at a type
	// error, so one run shows both.
	for _, err := range unknownKeys(&md, decErr == nil) {
		problems.add(err)
	}
	if decErr != nil {
		if errors.As(decErr, &pe) {
			problems.add(parseError(pe))
		} else {
			problems.add(typeError(decErr))
		}
		return Config{}, &problems
	}
	if err := problems.err(); err != nil {
		return Config{}, err
	}
	notifyDefaults(md.Keys(), cfg.Notify)
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// syntaxError reports where the parser stopped. Its LastKey is only the
// key parsed last, which may be far from the error, so it is left out.
func syntaxError(pe toml.ParseError) error {
	if pe.Position.Line > 0 {
		return fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
	}
	return errors.New(pe.Message)
}

// parseError reports a value the decoder could not store (an integer out
// of range): there LastKey is the key being decoded.
func parseError(pe toml.ParseError) error {
	if pe.LastKey == "" {
		return syntaxError(pe)
	}
	return &KeyError{Key: pe.LastKey, Line: pe.Position.Line, Err: errors.New(pe.Message)}
}

// typeRE matches the decoder's type errors, which it returns as plain
// errors: toml: line 3 (last key "dovecot.listen"): incompatible types: ...
var typeRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

func typeError(err error) error {
	m := typeRE.FindStringSubmatch(err.Error())
	if m == nil {
		return errors.New(strings.TrimPrefix(err.Error(), "toml: "))
	}
	line, _ := strconv.Atoi(m[1])
	key, uerr := strconv.Unquote(`"` + m[2] + `"`)
	if uerr != nil {
		key = m[2]
	}
	msg := m[3]
	if t := incompatibleRE.FindStringSubmatch(msg); t != nil {
		want := t[2]
		if want == "slice" {
			want = "array"
		}
		msg = fmt.Sprintf("wrong type: the value is a TOML %s, want %s", t[1], want)
	}
	return &KeyError{Key: key, Line: line, Err: errors.New(msg)}
}

var incompatibleRE = regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (\S+)$`)

// unknownKeys returns an error for every key of the file that is not a
// field of Config, spelled exactly (the decoder itself matches names
// case-insensitively), and, when decoding finished, for every key the
// decoder left undecoded. Below an unknown table, only the table is
// reported.
func unknownKeys(md *toml.MetaData, decoded bool) []error {
	var errs []error
	bad := map[string]bool{}
	report := func(k toml.Key) {
		s := k.String()
		// Skip keys below one already reported. k[:i].String() is a
		// prefix of s ending before a '.', and a '.' inside a quoted part
		// leaves an unbalanced quote that no reported key has.
		for j := range len(s) {
			if s[j] == '.' && bad[s[:j]] {
				return
			}
		}
		if bad[s] {
			return
		}
		bad[s] = true
		msg := "unknown key"
		if hint := suggest(k); hint != "" {
			msg += "; did you mean " + hint + "?"
		}
		errs = append(errs, &KeyError{Key: s, Err: errors.New(msg)})
	}
	for _, k := range md.Keys() {
		if !known(reflect.TypeFor[Config](), k) {
			report(k)
		}
	}
	if decoded {
		for _, k := range md.Undecoded() {
			report(k)
		}
	}
	return errs
}

// known reports whether key names a field (or a map entry) below t.
func known(t reflect.Type, key []string) bool {
	for _, part := range key {
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByKey(t, part)
			if !ok {
				return false
			}
			t = f.Type
		case reflect.Map:
			t = t.Elem()
		case reflect.Slice:
			t = t.Elem()
		default:
			return false
		}
	}
	return true
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && tomlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

// suggest returns the known key closest to an unknown one: the same key in
// other case, or a sibling within two edits.
func suggest(key []string) string {
	t := reflect.TypeFor[Config]()
	for _, part := range key[:len(key)-1] {
		if t.Kind() != reflect.Struct {
			return ""
		}
		f, ok := fieldByKey(t, part)
		if !ok {
			return ""
		}
		t = f.Type
		if isTableArray(t) {
			t = t.Elem()
		}
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	last := key[len(key)-1]
	best, bestD := "", 3
	for i := range t.NumField() {
		name := tomlName(t.Field(i))
		d := EditDistance(strings.ToLower(last), name)
		if d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return toml.Key(append(append([]string{}, key[:len(key)-1]...), best)).String()
}

// EditDistance is the Levenshtein distance of a and b in bytes, for the
// "did you mean" of short names only: past 64 bytes it is 1<<30.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkShape refuses input nested deeper than maxNesting or with a key of
// more than maxKeyParts parts, skipping strings and comments. It is a
// cheap linear pass that keeps the parser's worst cases away.
func checkShape(data []byte) error {
	line, depth, dots := 1, 0, 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '\n':
			line++
			dots = 0
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			if i+2 < len(data) && data[i+1] == c && data[i+2] == c {
				// Multi-line string: up to the next triple quote.
				i += 3
				for i < len(data) {
					if data[i] == '\\' && c == '"' {
						i += 2
						continue
					}
					if data[i] == '\n' {
						line++
					}
					if data[i] == c && i+2 < len(data) && data[i+1] == c && data[i+2] == c {
						// A closing run may have up to two more quotes.
						i += 2
						for i+1 < len(data) && data[i+1] == c {
							i++
						}
						break
					}
					i++
				}
				continue
			}
			for i+1 < len(data) && data[i+1] != c && data[i+1] != '\n' {
				i++
				if data[i] == '\\' && c == '"' && i+1 < len(data) && data[i+1] != '\n' {
					i++
				}
			}
			i++ // the closing quote (or the newline, counted next round)
			if i < len(data) && data[i] == '\n' {
				i--
			}
		case '[', '{':
			depth++
			dots = 0
			if depth > maxNesting {
				return fmt.Errorf("line %d: nested more than %d levels deep", line, maxNesting)
			}
		case ']', '}':
			depth = max(depth-1, 0)
			dots = 0
		case '=', ',':
			dots = 0
		case '.':
			dots++
			if dots > maxKeyParts {
				return fmt.Errorf("line %d: a key with more than %d dotted parts", line, maxKeyParts)
			}
		}
	}
	return nil
}
