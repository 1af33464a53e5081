package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/config"
)

var update = flag.Bool("update", false, "rewrite docs/mailgate.8 from the command table")

const manPath = "../../docs/mailgate.8"

// The committed man page is what `mailgate help --man` prints: the man
// page and --help come from one table. Regenerate with
// go test ./cmd/mailgate -run TestManPageCurrent -update.
func TestManPageCurrent(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help", "--man"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(manPath, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, out.Bytes()) {
		t.Fatalf("%s differs from `mailgate help --man`; regenerate it: go test ./cmd/mailgate -run TestManPageCurrent -update", manPath)
	}
	// Every command and every flag of the table is in it.
	for _, c := range commands() {
		if !bytes.Contains(have, []byte(`.SS "mailgate `+c.name+`"`)) {
			t.Errorf("man page lacks %s", c.name)
		}
		c.flags().VisitAll(func(f *flag.Flag) {
			if !bytes.Contains(have, []byte(`\fB\-\-`+roff(f.Name)+`\fR`)) {
				t.Errorf("man page lacks %s --%s", c.name, f.Name)
			}
		})
	}
}

// The man page is valid roff: man(1) renders it without a warning.
func TestManPageRenders(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("no man(1)")
	}
	abs, _ := filepath.Abs(manPath)
	cmd := exec.Command("man", "--warnings", "-l", "-Tutf8", abs)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man: %v\n%s", err, stderr.String())
	}
	text := regexp.MustCompile(".\x08").ReplaceAllString(string(out), "") // overstrike bold
	for _, want := range []string{"mailgate rule add", "--account A", "EXIT STATUS"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered man page lacks %q", want)
		}
	}
}

// Each command's synopsis names exactly its flags (besides --config and
// --socket): the synopsis is written by hand, the flags are the code's.
func TestSynopsisNamesEveryFlag(t *testing.T) {
	inSyn := regexp.MustCompile(`--([a-z-]+)`)
	for _, c := range commands() {
		fs := c.flags()
		for _, m := range inSyn.FindAllStringSubmatch(c.synopsis, -1) {
			if fs.Lookup(m[1]) == nil {
				t.Errorf("%s: synopsis names --%s, which is no flag", c.name, m[1])
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !commonFlags[f.Name] && !strings.Contains(c.synopsis+" ", "--"+f.Name+" ") && !strings.Contains(c.synopsis, "--"+f.Name+"]") && !strings.Contains(c.synopsis, "--"+f.Name+")") {
				if c.name != "help" { // help --man and --bash-completion are hidden
					t.Errorf("%s: synopsis lacks --%s", c.name, f.Name)
				}
			}
		})
	}
}

// Every command answers --help on stdout with its flags in --flag form;
// the flag package's own -flag form never shows.
func TestHelpPerCommand(t *testing.T) {
	for _, c := range commands() {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(strings.Fields(c.name), "--help"), &out, &errOut)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s --help: %v", c.name, err)
		}
		s := out.String()
		if !strings.HasPrefix(s, "usage: mailgate "+c.name) {
			t.Errorf("%s --help:\n%s", c.name, s)
		}
		if regexp.MustCompile(`(^|\s)-[a-z]`).MatchString(s) {
			t.Errorf("%s --help shows a -flag:\n%s", c.name, s)
		}
		c.flags().VisitAll(func(f *flag.Flag) {
			if !strings.Contains(s, "  --"+f.Name) {
				t.Errorf("%s --help lacks --%s:\n%s", c.name, f.Name, s)
			}
		})
		if errOut.Len() > 0 {
			t.Errorf("%s --help wrote to stderr: %s", c.name, errOut.String())
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help", "rule", "add"}, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "--account A") {
		t.Errorf("help rule add: %v\n%s", err, out.String())
	}
}

// A mistyped command or flag is a usage error naming the nearest one.
func TestDidYouMean(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, "did you mean status?"},
		{[]string{"explian", "--ip", "1.2.3.4"}, "did you mean explain?"},
		{[]string{"rule", "ad", "--ip", "1.2.3.4"}, "did you mean rule add?"},
		{[]string{"rul", "list"}, "did you mean rule list?"},
		{[]string{"permit", "lst"}, "did you mean permit list?"},
		{[]string{"rule", "list", "--jsn"}, "unknown flag --jsn; did you mean --json?"},
		{[]string{"rule", "add", "--acount", "a@x"}, "unknown flag --acount; did you mean --account?"},
		{[]string{"ban", "add", "--four", "1h"}, "did you mean --for?"},
		{[]string{"audit", "--limit", "x"}, `invalid value "x" for flag --limit`},
		{[]string{"audit", "--limit"}, "--limit needs a value"},
		{[]string{"rule"}, "rule needs a subcommand: add, list, rm"},
	} {
		err := run(context.Background(), c.args, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mailgate %s: got %v, want a usage error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	// Nothing close: no suggestion.
	err := run(context.Background(), []string{"frobnicate"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("frobnicate: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"status", "stauts", 2}, {"kitten", "sitting", 3}, {"json", "json", 0}} {
		if got := config.EditDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// explain exits 3 on a refusal and 0 when allowed, with and without --json.
func TestExplainExitStatus(t *testing.T) {
	d := startDaemon(t)
	add := []string{"rule", "add", "--account", "a@example.com", "--allow", "--ip", "10.0.0.1", "--service", "imap", "--socket", d.sock}
	if err := run(context.Background(), add, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip   string
		want error
	}{{"10.0.0.1", nil}, {"10.0.0.2", exitRefused}} {
		for _, js := range []bool{false, true} {
			args := []string{"explain", "--account", "a@example.com", "--ip", c.ip, "--service", "imap", "--socket", d.sock}
			if js {
				args = append(args, "--json")
			}
			var out bytes.Buffer
			err := run(context.Background(), args, &out, &bytes.Buffer{})
			if !errors.Is(err, c.want) && err != c.want {
				t.Errorf("explain from %s (json %v): %v, want %v", c.ip, js, err, c.want)
			}
			if out.Len() == 0 {
				t.Errorf("explain from %s printed nothing", c.ip)
			}
		}
	}
}

// rule rm and ban rm, which change something, take --json.
func TestRemoveJSON(t *testing.T) {
	d := startDaemon(t)
	var out bytes.Buffer
	add := []string{"rule", "add", "--account", "a@example.com", "--allow", "--ip", "10.0.0.1", "--json", "--socket", d.sock}
	if err := run(context.Background(), add, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var added struct{ ID int64 }
	if err := json.Unmarshal(out.Bytes(), &added); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"rule", "rm", "--json", "--socket", d.sock, strconv.FormatInt(added.ID, 10)}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var removed []struct {
		ID    int64
		Match string
	}
	if err := json.Unmarshal(out.Bytes(), &removed); err != nil || len(removed) != 1 || removed[0].ID != added.ID || removed[0].Match != "10.0.0.1" {
		t.Fatalf("rule rm --json: %v %s", err, out.String())
	}
}

// import --json prints a summary an admin's script can read.
func TestImportJSON(t *testing.T) {
	d := startDaemon(t)
	f := filepath.Join(t.TempDir(), "user-allowed")
	if err := os.WriteFile(f, []byte("a@example.com|10.0.0.1\nb@example.com|10.0.0.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ added, present int }{{2, 0}, {0, 2}} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"import", "user-allowed", "--file", f, "--json", "--socket", d.sock}, &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		var got importJSON
		if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Read != 2 || got.Added != want.added || got.Present != want.present || len(got.Rules) != want.added {
			t.Errorf("run %d: %v %+v", i, err, got)
		}
	}
}

// The bash completion script is valid bash and completes commands,
// subcommands and flags.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var script bytes.Buffer
	if err := run(context.Background(), []string{"help", "--bash-completion"}, &script, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "mailgate")
	if err := os.WriteFile(f, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words string
		want  string
	}{
		{"mailgate sta", "status"},
		{"mailgate rule ", "add list rm"},
		{"mailgate rule add --acc", "--account"},
		{"mailgate explain --service po", "pop3"},
		{"mailgate attack ", "end"},
	} {
		prog := `source ` + f + `; COMP_WORDS=(` + c.words + `); [[ "` + c.words + `" == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _mailgate; echo "${COMPREPLY[*]}"`
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil || !strings.Contains(string(out), c.want) {
			t.Errorf("complete %q: %v %q, want %q", c.words, err, out, c.want)
		}
	}
}

// JSON output has times to the second, as the text output.
func TestPrintJSONTimesInSeconds(t *testing.T) {
	var out bytes.Buffer
	v := map[string]any{"at": time.Date(2026, 11, 22, 10, 30, 0, 123456789, time.UTC), "comment": "x"}
	if err := printJSON(&out, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"at": "2026-11-22T10:30:00Z"`) {
		t.Errorf("got %s", out.String())
	}
}

// The package's short config passes config check as shipped (the
// package test checks it installed, too).
func TestPackageConfigChecks(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "--config", "../../packaging/mailgate.toml"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "packaging/mailgate.toml: ok") || strings.Contains(out.String(), "warning") {
		t.Errorf("config check:\n%s", out.String())
	}
}
