// Package txtar reads and writes the txtar format of golden test files
// (golang.org/x/tools/txtar, reimplemented to keep tests free of that
// module): an archive is a comment followed by files, each introduced by a
// "-- name --" line.
package txtar

import (
	"fmt"
	"strings"
)

// Archive is a parsed txtar file.
type Archive struct {
	Comment string
	Files   []File
}

// File is one named section of an archive.
type File struct {
	Name, Data string
}

// Parse reads an archive. It never fails: text before the first marker is
// the comment.
func Parse(s string) Archive {
	var a Archive
	cur := -1
	var b strings.Builder
	flush := func() {
		if cur < 0 {
			a.Comment = b.String()
		} else {
			a.Files[cur].Data = b.String()
		}
		b.Reset()
	}
	for line := range strings.Lines(s) {
		if name, ok := markerName(line); ok {
			flush()
			a.Files = append(a.Files, File{Name: name})
			cur = len(a.Files) - 1
			continue
		}
		b.WriteString(line)
	}
	flush()
	return a
}

func markerName(line string) (string, bool) {
	line = strings.TrimSuffix(line, "\n")
	if !strings.HasPrefix(line, "-- ") || !strings.HasSuffix(line, " --") || len(line) < 7 {
		return "", false
	}
	return strings.TrimSpace(line[3 : len(line)-3]), true
}

// Format writes an archive; each file's data ends with a newline.
func Format(a Archive) string {
	var b strings.Builder
	b.WriteString(a.Comment)
	for _, f := range a.Files {
		fmt.Fprintf(&b, "-- %s --\n", f.Name)
		b.WriteString(f.Data)
		if f.Data != "" && !strings.HasSuffix(f.Data, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
