package config

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite etc/mailgate.toml from Example()")

const examplePath = "../../etc/mailgate.toml"

func TestDefaultValidates(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if len(d.Messages) == 0 {
		t.Fatal("Default().Messages is empty; want policy.DefaultMessages()")
	}
	// Each call returns fresh maps and slices.
	d.Messages["global_deny"] = "changed"
	d.Policy.TrustedNetworks = append(d.Policy.TrustedNetworks, "192.0.2.1")
	if d2 := Default(); d2.Messages["global_deny"] == "changed" || len(d2.Policy.TrustedNetworks) != 0 {
		t.Fatal("Default() shares state between calls")
	}
}

// errorWants returns the substrings named by the file's leading
// "# error: " lines.
func errorWants(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wants []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w, ok := strings.CutPrefix(sc.Text(), "# error: ")
		if !ok {
			break
		}
		wants = append(wants, w)
	}
	return wants
}

func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			wants := errorWants(t, path)
			if len(wants) == 0 {
				t.Fatal("first line must be '# error: <substring>'")
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded; want an error containing %q", wants)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error does not start with the file name:\n%s", msg)
			}
			for _, w := range wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != path {
				t.Errorf("error is not a *config.Error for %s: %#v", path, err)
			}
		})
	}
}

func TestGoodConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good configs: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("loaded config does not validate: %v", err)
			}
			// What encode writes reads back as the same configuration.
			back, err := Parse(encode(&cfg))
			if err != nil {
				t.Fatalf("re-parsing the encoded config: %v\n%s", err, encode(&cfg))
			}
			if !reflect.DeepEqual(back, cfg) {
				t.Fatalf("round trip changed the config:\n got %#v\nwant %#v", back, cfg)
			}
		})
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	cfg, err := Load("testdata/good/empty.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("empty file: got %#v, want Default()", cfg)
	}
}

func TestFullValues(t *testing.T) {
	cfg, err := Load("testdata/good/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || cfg.Dovecot.Listen != "[::1]:4001" || cfg.Dovecot.MaxBodyBytes != 1<<20 ||
		cfg.Admin.Token != "6f1d0c3b9a8e7f2d4c5b6a7980fedcba" || cfg.Store.Path != "/var/lib/mailgate/mailgate.db" {
		t.Errorf("values not decoded: %+v", cfg)
	}
	// [messages] overrides the reasons it names and keeps the others.
	def := Default().Messages
	if got := cfg.Messages["service_closed"]; got != "{service} is switched off for {login}; ask the help desk." {
		t.Errorf("messages.service_closed = %q", got)
	}
	if got := cfg.Messages["global_deny"]; got != def["global_deny"] || got == "" {
		t.Errorf("messages.global_deny = %q, want the default %q", got, def["global_deny"])
	}
	if len(cfg.Messages) != len(def) {
		t.Errorf("messages has %d entries, want %d", len(cfg.Messages), len(def))
	}

	trusted, err := cfg.TrustedPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.10/32"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("198.51.100.0/24"), // ::ffff:198.51.100.0/120 is IPv4
	}
	if !reflect.DeepEqual(trusted, want) {
		t.Errorf("TrustedPrefixes = %v, want %v", trusted, want)
	}
	deny, err := cfg.DenyPrefixes()
	if err != nil || !reflect.DeepEqual(deny, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}) {
		t.Errorf("DenyPrefixes = %v, %v", deny, err)
	}
}

func TestPrefixesErrorNamesIndex(t *testing.T) {
	c := Default()
	c.Policy.TrustedNetworks = []string{"192.0.2.1", "192.0.2.0/24", "bogus"}
	c.Policy.DenyNetworks = []string{"none"}
	if _, err := c.TrustedPrefixes(); err == nil || !strings.HasPrefix(err.Error(), "policy.trusted_networks[2]: ") {
		t.Errorf("TrustedPrefixes error = %v", err)
	}
	if _, err := c.DenyPrefixes(); err == nil || !strings.HasPrefix(err.Error(), "policy.deny_networks[0]: ") {
		t.Errorf("DenyPrefixes error = %v", err)
	}
	c = Default()
	if ps, err := c.TrustedPrefixes(); err != nil || ps == nil || len(ps) != 0 {
		t.Errorf("TrustedPrefixes of default = %v, %v; want empty", ps, err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Log.Level = "INFO"
	c.Log.Decisions = ""
	c.Store.Driver = "bolt"
	c.Store.Path = ""
	c.Admin.Socket = "/" + strings.Repeat("s", 200)
	c.Admin.Listen = "localhost:http"
	c.Dovecot.Listen = "127.0.0.1"
	c.Dovecot.APIKey = "k\x01"
	c.Dovecot.MaxBodyBytes = 1023
	c.Policy.TrustedNetworks = []string{"10.0.0.0/8", "none", "10.1.1.1/16"}
	c.Policy.DenyNetworks = []string{""}
	c.Messages = map[string]string{"nope": "x", "account_deny": "a\nb", "default": "ok", "a b": "x"}
	err := c.Validate()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Validate = %v, want a *config.Error", err)
	}
	var keys []string
	for _, p := range ce.Problems {
		var ke *KeyError
		if !errors.As(p, &ke) {
			t.Fatalf("problem %v is not a *KeyError", p)
		}
		keys = append(keys, ke.Key)
	}
	want := []string{
		"log.level", "log.decisions", "store.driver", "store.path", "admin.socket",
		"admin.listen", "admin.token", "dovecot.listen", "dovecot.api_key", "dovecot.max_body_bytes",
		"policy.trusted_networks[1]", "policy.trusted_networks[2]", "policy.deny_networks[0]",
		`messages."a b"`, "messages.account_deny", "messages.default", "messages.nope",
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problem keys:\n got %q\nwant %q\n%v", keys, want, err)
	}
	if !strings.HasPrefix(err.Error(), "17 problems:\n\tlog.level: ") {
		t.Errorf("error text:\n%v", err)
	}
}

func TestDovecotListenIgnoredWhenDisabled(t *testing.T) {
	c := Default()
	c.Dovecot.Enabled = false
	c.Dovecot.Listen = "garbage"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Dovecot.Enabled = true
	if err := c.Validate(); err == nil {
		t.Fatal("bad dovecot.listen accepted while enabled")
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:4001", true},
		{"[::1]:4001", true},
		{":4001", true},
		{"localhost:4001", true},
		{"mail.example.com:0", true},
		{"127.0.0.1", false},
		{"::1:4001", false},
		{"127.0.0.1:", false},
		{"127.0.0.1:imap", false},
		{"127.0.0.1:65536", false},
		{"bad_host:4001", false},
		{"-x.example:4001", false},
		{"", false},
	} {
		if err := checkHostPort(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkHostPort(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestCheckMessage(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true},
		{"{service} from {ip} for {login}", true},
		{"use {} or { x } freely, and a lone { too", true},
		{"tab\tis fine", true},
		{strings.Repeat("x", MaxMessageLen), true},
		{strings.Repeat("x", MaxMessageLen+1), false},
		{"{Service}", false},
		{"{user}", false},
		{"a\rb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
	} {
		if err := checkMessage(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkMessage(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestUnknownTableReportedOnce(t *testing.T) {
	_, err := Parse([]byte("[sendmail]\nlisten = 1\n[sendmail.tls]\ncert = 'x'\n[log]\nlevl = 'info'\n"))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse = %v", err)
	}
	if len(ce.Problems) != 2 {
		t.Fatalf("want 2 problems (sendmail and log.levl), got:\n%v", err)
	}
	if got := ce.Problems[1].Error(); got != "log.levl: unknown key; did you mean log.level?" {
		t.Errorf("second problem = %q", got)
	}
}

func TestManyProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	for i := range 500 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a'+i%26)) + string(rune('a'+i/26)))
		b.WriteString(" = 1\n")
	}
	_, err := Parse([]byte(b.String()))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != maxProblems || ce.Omitted != 500-maxProblems {
		t.Fatalf("got %d problems, %d omitted; want %d and %d", len(ce.Problems), ce.Omitted, maxProblems, 500-maxProblems)
	}
	if !strings.Contains(err.Error(), "(and 450 more)") {
		t.Errorf("error does not say how many were left out")
	}
}

func TestSizeLimit(t *testing.T) {
	dir := t.TempDir()
	// Exactly the limit: a comment of MaxFileSize bytes loads.
	atLimit := filepath.Join(dir, "at-limit.toml")
	if err := os.WriteFile(atLimit, append([]byte("#"), bytes.Repeat([]byte("x"), MaxFileSize-1)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(atLimit); err != nil {
		t.Fatalf("file of exactly %d bytes: %v", MaxFileSize, err)
	}
	over := filepath.Join(dir, "over.toml")
	if err := os.WriteFile(over, append([]byte("#"), bytes.Repeat([]byte("x"), MaxFileSize)...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(over)
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") || !strings.HasPrefix(err.Error(), over+": ") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := Parse(make([]byte, MaxFileSize+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Parse of oversized input: %v", err)
	}
}

func TestShapeSkipsStringsAndComments(t *testing.T) {
	deep := strings.Repeat("[", 40) + strings.Repeat(".", 40) + strings.Repeat("{", 40)
	src := "# " + deep + "\n" +
		"[messages]\n" +
		"global_deny = \"" + deep + " \\\" " + deep + "\"\n" +
		"account_deny = '" + deep + "'\n" +
		"service_closed = '''" + deep + "'''\n" +
		"bad_address = \"\"\"" + deep + "\\\"\"\" \"\"\"\n"
	if err := checkShape([]byte(src)); err != nil {
		t.Fatalf("checkShape counted brackets in strings or comments: %v", err)
	}
	if _, err := Parse([]byte(src)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	// Outside strings the same text is refused, and an unterminated
	// string ends at the line's end.
	for _, s := range []string{deep, "a = \"x\nb = " + deep, "a.b = 1\n" + strings.Repeat("a.", 33) + "b = 1"} {
		if err := checkShape([]byte(s)); err == nil {
			t.Errorf("checkShape(%.30q...) accepted", s)
		}
	}
	// Many shallow constructs are fine: the bounds are per key and per value.
	ok := strings.Repeat("x = [[1], [2], {a.b.c = 3}]\n", 1000)
	if err := checkShape([]byte(ok)); err != nil {
		t.Errorf("checkShape of shallow input: %v", err)
	}
}

func TestLoadOrDefault(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")
	present := filepath.Join(dir, "present.toml")
	if err := os.WriteFile(present, []byte("[log]\nlevel = \"warn\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, used, err := loadOrDefault("", missing)
	if err != nil || used != "" || !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("no file: %v, %q, %v; want Default(), \"\", nil", cfg, used, err)
	}
	cfg, used, err = loadOrDefault("", present)
	if err != nil || used != present || cfg.Log.Level != "warn" {
		t.Errorf("default path present: level %q, used %q, %v", cfg.Log.Level, used, err)
	}
	cfg, used, err = loadOrDefault(present, missing)
	if err != nil || used != present || cfg.Log.Level != "warn" {
		t.Errorf("explicit path: level %q, used %q, %v", cfg.Log.Level, used, err)
	}
	_, _, err = loadOrDefault(missing, present)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("explicit missing path: %v; want a not-exist error naming it", err)
	}
	// A bad default file is an error, not a silent fallback.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrDefault("", bad); err == nil {
		t.Error("bad file at the default path was accepted")
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b`, `back\slash`, "tab\tnl\ncr\r", "\x00\x01\x1f\x7f", "ünïcødé ✓ 😀", "'''\"\"\"", "\xff"} {
		var v struct{ K string }
		if _, err := toml.Decode("K = "+quote(s), &v); err != nil {
			t.Errorf("quote(%q) = %s: %v", s, quote(s), err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if v.K != want {
			t.Errorf("quote(%q) decodes to %q", s, v.K)
		}
	}
	for _, k := range []string{"plain_key-1", "a b", "a.b", "", "ключ"} {
		var v map[string]int
		if _, err := toml.Decode(quoteKey(k)+" = 1", &v); err != nil || v[k] != 1 {
			t.Errorf("quoteKey(%q) = %s: %v %v", k, quoteKey(k), v, err)
		}
	}
}

func TestEveryFieldDocumented(t *testing.T) {
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := path + tomlName(f)
			if f.Tag.Get("toml") == "" {
				t.Errorf("%s: no toml tag", key)
			}
			if strings.TrimSpace(f.Tag.Get("doc")) == "" {
				t.Errorf("%s: no doc tag", key)
			}
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".")
			case isTableArray(f.Type):
				walk(f.Type.Elem(), key+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

// TestExampleDrift fails when etc/mailgate.toml is not what Example
// generates; run with -update to rewrite it.
func TestExampleDrift(t *testing.T) {
	got := Example()
	if *update {
		if err := os.WriteFile(examplePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/config -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date; run: go test ./internal/config -update", examplePath)
	}
}

func TestExampleIsDefault(t *testing.T) {
	cfg, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("%s does not load as Default():\n got %#v\nwant %#v", examplePath, cfg, Default())
	}
	// Every key of Config appears in the example.
	var md toml.MetaData
	var into map[string]any
	md, err = toml.Decode(string(Example()), &into)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(reflect.Type, []string)
	walk = func(typ reflect.Type, path []string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := append(append([]string{}, path...), tomlName(f))
			if isTableArray(f.Type) {
				// Empty by default: shown commented out, see
				// TestExampleEntries.
				if !strings.Contains(string(Example()), "\n# [["+strings.Join(key, ".")+"]]\n") {
					t.Errorf("the example lacks a commented-out [[%s]]", strings.Join(key, "."))
				}
				continue
			}
			if !md.IsDefined(key...) {
				t.Errorf("the example lacks %s", strings.Join(key, "."))
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), nil)
}

func TestExampleLayout(t *testing.T) {
	ex := string(Example())
	for i, line := range strings.Split(ex, "\n") {
		if strings.HasPrefix(line, "#") && len([]rune(line)) > commentWidth {
			t.Errorf("line %d is longer than %d: %q", i+1, commentWidth, line)
		}
	}
	for _, want := range []string{
		"go test ./internal/config -update",
		"\n[dovecot]\n\n# Serve the Dovecot auth policy API.\nenabled = true\n",
		"\nmax_body_bytes = 16384\n",
		"\ntrusted_networks = []\n",
		"\n[messages]\naccount_deny = ",
		"\n[postfix]\n\n# Serve the Postfix doors.\nenabled = true\n",
		"\nservices = [\"imap\", \"pop3\"]\n",
		"\nmax_accounts = 100000\n\n# Limits for one account",
		"#\n# [[limits.account]]\n# account = \"newsletter@example.com\"\n# messages_per_hour = 1000\n",
	} {
		if !strings.Contains(ex, want) {
			t.Errorf("example lacks %q", want)
		}
	}
	if !strings.HasSuffix(ex, "\"\n") || strings.HasSuffix(ex, "\n\n") {
		t.Error("example should end with exactly one newline")
	}
}
