package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenAndCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	var out bytes.Buffer
	if err := run([]string{"gen", "-lines", "5000", "-seed", "3", path}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Lines:5000 ") {
		t.Errorf("gen: %s", out.String())
	}
	out.Reset()
	if err := run([]string{"count", path}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ": 5000 lines, ") || !strings.Contains(out.String(), "lines/s") {
		t.Errorf("count: %s", out.String())
	}
	for _, bad := range [][]string{nil, {"gen"}, {"count"}, {"frobnicate"}, {"count", filepath.Join(t.TempDir(), "missing")}} {
		if err := run(bad, &out); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
