package txtar

import "testing"

func TestRoundTrip(t *testing.T) {
	in := "comment\nline 2\n-- a --\nx\n-- b --\n-- c --\ny\nz\n"
	a := Parse(in)
	if a.Comment != "comment\nline 2\n" || len(a.Files) != 3 || a.Files[0] != (File{"a", "x\n"}) ||
		a.Files[1] != (File{"b", ""}) || a.Files[2] != (File{"c", "y\nz\n"}) {
		t.Fatalf("parse: %#v", a)
	}
	if got := Format(a); got != in {
		t.Fatalf("format: %q", got)
	}
	if got := Format(Archive{Files: []File{{"n", "no newline"}}}); got != "-- n --\nno newline\n" {
		t.Fatalf("format adds the final newline: %q", got)
	}
}
