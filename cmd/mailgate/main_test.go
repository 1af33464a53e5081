package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)
	good := map[string]time.Time{
		"90m":                  now.Add(90 * time.Minute),
		"12h":                  now.Add(12 * time.Hour),
		"7d":                   now.AddDate(0, 0, 7),
		"2w":                   now.AddDate(0, 0, 14),
		"1.5d":                 now.Add(36 * time.Hour),
		"2026-12-31":           time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-23T08:00:00Z": time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC),
	}
	for in, want := range good {
		if got, err := parseExpiry(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"soon": "neither a duration", "-5m": "not a positive", "0s": "not a positive",
		"2020-01-01": "in the past", "2026-11-22T10:00:00Z": "in the past", "xd": "neither",
	} {
		if _, err := parseExpiry(in, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseExpiry(%q) error = %v, want %q", in, err, want)
		}
	}
}

// Command-line mistakes are usage errors (exit 2) that name the flag, and
// are caught before any daemon is asked.
func TestUsageErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"rule"}, "rule needs a subcommand"},
		{[]string{"rule", "zap"}, `unknown command "rule zap"`},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--ip", "10.0.0.300"}, `--ip: "10.0.0.300" is not an IP address`},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--ip", "10.0.0.1/8"}, "did you mean 10.0.0.0/8"},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--deny", "--ip", "10.0.0.1"}, "exactly one of --allow, --deny and --extra"},
		{[]string{"rule", "add", "--account", "a@x", "--deny", "--ip", "none"}, "--ip: none closes a service"},
		{[]string{"rule", "add", "--account", "a b", "--deny", "--ip", "10.0.0.1"}, "--account:"},
		{[]string{"rule", "add", "--account", "a@x", "--extra", "--country", "FRA"}, `--country: "FRA" is not a country code`},
		{[]string{"rule", "add", "--account", "a@x", "--extra", "--country", "FR", "--ip", "10.0.0.1"}, "give --ip or --country, not both"},
		{[]string{"rule", "add", "--global", "--deny", "--country", "CN"}, "--country: global country lists are set in the config file"},
		{[]string{"rule", "add", "--global", "--extra", "--ip", "10.0.0.1"}, "extra rules belong to an account"},
		{[]string{"import", "user-allowed"}, "--file is required"},
		{[]string{"rule", "add", "--allow", "--ip", "10.0.0.1"}, "--account is required"},
		{[]string{"rule", "add", "--account", "a@x", "--global", "--allow", "--ip", "10.0.0.1"}, "not both"},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--ip", "10.0.0.1", "--service", "web"}, `--service: unknown service "web"`},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--ip", "10.0.0.1", "--expires", "soon"}, "--expires:"},
		{[]string{"rule", "add", "--account", "a@x", "--allow", "--ip", "10.0.0.1", "--bogus"}, "unknown flag --bogus"},
		{[]string{"rule", "rm"}, "give the id"},
		{[]string{"rule", "rm", "abc"}, `"abc" is not a rule id`},
		{[]string{"explain", "--account", "a@x", "--ip", "nope", "--service", "imap"}, `--ip: "nope" is not an IP address`},
		{[]string{"explain", "--account", "a@x", "--ip", "10.0.0.1", "--service", "all"}, "--service:"},
		{[]string{"import", "ispconfig"}, "exactly one of --csv, --sql and --mysql"},
	} {
		var out, errOut bytes.Buffer
		args := append(c.args, "--socket", sock)
		if len(c.args) == 0 {
			args = nil
		}
		err := run(context.Background(), args, &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mailgate %s: got %v, want a usage error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// A client command with no daemon says so plainly (exit 1, not 2).
func TestDaemonNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	err := run(context.Background(), []string{"rule", "list", "--socket", sock}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "mailgate is not running") {
		t.Fatalf("got %v", err)
	}
}

func TestParseFlagsAnyOrder(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"rule", "rm", "--socket", filepath.Join(t.TempDir(), "s"), "7"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "rule rm 7: mailgate is not running") {
		t.Fatalf("flags before the id: %v", err)
	}
}

// FuzzParseExpiry: never a panic; an accepted expiry is in the future.
func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"90m", "7d", "2w", "1.5d", "2026-12-31", "2026-11-23T08:00:00Z", "-1d", "1e300d", "NaNd"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseExpiry(s, now)
		if err == nil && !e.After(now.Add(-time.Second)) {
			t.Fatalf("parseExpiry(%q) = %v, not after %v", s, e, now)
		}
	})
}

// The config file's brute-force defaults are the tracker's defaults, and
// every field is carried over (a field added to one but not the other
// fails here).
func TestBruteForceDefaults(t *testing.T) {
	got := config.Default().BruteForce.Abuse()
	if want := abuse.DefaultConfig(); got != want {
		t.Errorf("config defaults differ from abuse.DefaultConfig():\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
}
