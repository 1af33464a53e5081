package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// exampleHeader opens Example, as written (not wrapped).
const exampleHeader = `# mailgate configuration.
#
# mailgate reads /etc/mailgate/mailgate.toml, or the file given with --config; without
# either it runs on the defaults below. Every key is shown with its default value; a key
# left out keeps its default, and an unknown key is an error. Check a file with:
#
#     mailgate config check --config FILE
#
# Generated from internal/config/config.go by:
#
#     go test ./internal/config -update
#
# Edit the doc tags and Default() there, not this file.
`

// commentWidth is where comment lines wrap.
const commentWidth = 90

// Example returns the commented example configuration: every key with its
// documentation and its default value. etc/mailgate.toml is this output.
func Example() []byte {
	var b bytes.Buffer
	b.WriteString(exampleHeader)
	b.WriteString("\n")
	d := Default()
	w := writer{b: &b, example: true, docs: true}
	w.table(nil, reflect.ValueOf(&d).Elem())
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// encode renders c as TOML with the same layout as Example. Parse of the
// result gives c back.
func encode(c *Config) []byte {
	var b bytes.Buffer
	w := writer{b: &b, docs: true}
	w.table(nil, reflect.ValueOf(c).Elem())
	return b.Bytes()
}

// exampleEntry is the entry Example shows, commented out, for an array of
// tables that is empty by default, so that a reader sees what one looks
// like.
func exampleEntry(path string) (any, bool) {
	switch path {
	case "notify":
		return notifyExample(), true
	case "logs.file":
		return LogFile{Path: "/var/log/mail.log", Programs: []string{}, Services: []string{}}, true
	case "limits.account":
		return AccountLimits{
			Account:           "newsletter@example.com",
			MessagesPerHour:   1000,
			MessagesPerDay:    5000,
			RecipientsPerHour: 5000,
			RecipientsPerDay:  20000,
		}, true
	}
	return nil, false
}

// writer renders a struct as TOML. A type the file cannot express is a
// programming error in Config, caught by the package's tests; it panics.
type writer struct {
	b *bytes.Buffer
	// example shows an empty array of tables as a commented-out
	// exampleEntry.
	example bool
	// docs precedes each key with its doc tag as a comment, and a blank
	// line after.
	docs bool
}

// isTable reports whether a field is written as a table ([name]) or an
// array of tables ([[name]]) rather than as a key.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map || isTableArray(t)
}

// isTableArray reports whether t is written as an array of tables.
func isTableArray(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// table writes the plain keys of struct v, then its tables and arrays of
// tables.
func (w *writer) table(path []string, v reflect.Value) {
	b := w.b
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || isTable(f.Type) {
			continue
		}
		if w.docs {
			writeComment(b, f.Tag.Get("doc"))
		}
		fmt.Fprintf(b, "%s = %s\n", quoteKey(tomlName(f)), tomlValue(v.Field(i)))
		if w.docs {
			b.WriteString("\n")
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || !isTable(f.Type) {
			continue
		}
		sub := append(slices.Clip(path), tomlName(f))
		fv := v.Field(i)
		if isTableArray(f.Type) {
			w.tableArray(sub, f, fv)
			continue
		}
		writeComment(b, f.Tag.Get("doc"))
		fmt.Fprintf(b, "[%s]\n", tableName(sub))
		if f.Type.Kind() == reflect.Struct {
			b.WriteString("\n")
			w.table(sub, fv)
			continue
		}
		writeMap(b, fv)
		b.WriteString("\n")
	}
}

// tableArray writes each element of slice v as a [[path]] table. Empty,
// it writes nothing, or in an example a commented-out exampleEntry.
func (w *writer) tableArray(path []string, f reflect.StructField, v reflect.Value) {
	b := w.b
	name := tableName(path)
	if v.Len() == 0 {
		if !w.example {
			return
		}
		entry, ok := exampleEntry(strings.Join(path, "."))
		if !ok || reflect.TypeOf(entry) != f.Type.Elem() {
			panic(fmt.Sprintf("config: no example entry of type %v for [[%s]]", f.Type.Elem(), name))
		}
		writeComment(b, f.Tag.Get("doc"))
		fmt.Fprintf(b, "#\n# None by default. For example:\n#\n# [[%s]]\n", name)
		var eb bytes.Buffer
		ew := writer{b: &eb}
		ew.table(path, reflect.ValueOf(entry))
		for line := range strings.Lines(eb.String()) {
			b.WriteString("# ")
			b.WriteString(line)
		}
		b.WriteString("\n")
		return
	}
	writeComment(b, f.Tag.Get("doc"))
	for j := range v.Len() {
		fmt.Fprintf(b, "[[%s]]\n", name)
		if w.docs {
			b.WriteString("\n")
		}
		w.table(path, v.Index(j))
	}
}

// writeMap writes a map of plain values as keys in sorted order.
func writeMap(b *bytes.Buffer, m reflect.Value) {
	if m.Type().Key().Kind() != reflect.String {
		panic(fmt.Sprintf("config: cannot render map type %v", m.Type()))
	}
	keys := make([]string, 0, m.Len())
	for _, k := range m.MapKeys() {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(b, "%s = %s\n", quoteKey(k), tomlValue(m.MapIndex(reflect.ValueOf(k).Convert(m.Type().Key()))))
	}
}

var durationType = reflect.TypeFor[time.Duration]()

// tomlValue renders a plain value in TOML syntax.
func tomlValue(v reflect.Value) string {
	if v.Type() == durationType {
		return quote(formatDuration(time.Duration(v.Int())))
	}
	switch v.Kind() {
	case reflect.String:
		return quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		f := strconv.FormatFloat(v.Float(), 'f', -1, 64)
		if !strings.ContainsAny(f, ".eEn") {
			f += ".0" // a TOML float, so it decodes back into a float
		}
		return f
	case reflect.Slice, reflect.Array:
		items := make([]string, v.Len())
		n := 0
		for i := range items {
			items[i] = tomlValue(v.Index(i))
			n += len(items[i]) + 2
		}
		if n < commentWidth-20 {
			return "[" + strings.Join(items, ", ") + "]"
		}
		return "[\n  " + strings.Join(items, ",\n  ") + ",\n]"
	}
	panic(fmt.Sprintf("config: cannot render a value of type %v", v.Type()))
}

// formatDuration writes 1h rather than 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r) // invalid UTF-8 became U+FFFD in range
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteKey writes a key bare when TOML allows it, quoted otherwise.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return quote(k)
		}
	}
	return k
}

func tableName(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = quoteKey(p)
	}
	return strings.Join(parts, ".")
}

// writeComment writes text as "# " lines wrapped at commentWidth. Empty
// text writes nothing.
func writeComment(b *bytes.Buffer, text string) {
	line := "#"
	for _, w := range strings.Fields(text) {
		if line != "#" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > commentWidth {
			b.WriteString(line)
			b.WriteByte('\n')
			line = "#"
		}
		line += " " + w
	}
	if line != "#" {
		b.WriteString(line)
		b.WriteByte('\n')
	}
}
