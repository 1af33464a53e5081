package sendlimit

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The names of the four limits, as Exceeded.Limit, Usage.Over and the
// config file spell them.
const (
	MessagesPerHour   = "messages_per_hour"
	MessagesPerDay    = "messages_per_day"
	RecipientsPerHour = "recipients_per_hour"
	RecipientsPerDay  = "recipients_per_day"
)

// Bounds checked by Validate.
const (
	MaxLimit       = 10_000_000 // the largest value of one limit
	MaxKeyLen      = 320        // bytes in an Accounts key (and in a tracked login)
	MaxMaxAccounts = 10_000_000 // the largest MaxAccounts
)

// Config holds the limits. The zero value is not valid (MaxAccounts is 0);
// start from DefaultConfig.
type Config struct {
	// Default applies to every authenticated sender without an entry in
	// Accounts.
	Default Limits
	// Accounts holds per-account limits. A key is an exact login or
	// "@domain", lower-case. An entry replaces Default for its accounts
	// as a whole (all four fields; 0 = no limit): the exact login beats
	// "@domain", which beats Default.
	Accounts map[string]Limits
	// MaxAccounts bounds the senders tracked at once; the least recently
	// active is forgotten first (and its counts with it). Each takes about
	// 1 KB.
	MaxAccounts int
}

// DefaultConfig returns no limits for anyone (every sender is counted,
// none refused) and room for 100,000 senders.
func DefaultConfig() Config {
	return Config{MaxAccounts: 100_000}
}

// Validate checks c. Each problem names its key as the config file spells
// it (default.messages_per_hour: ..., accounts."@example.com": ...); all
// of them are joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	checkLimits := func(prefix string, l Limits) {
		for _, f := range []struct {
			name string
			v    int
		}{
			{MessagesPerHour, l.MessagesPerHour},
			{MessagesPerDay, l.MessagesPerDay},
			{RecipientsPerHour, l.RecipientsPerHour},
			{RecipientsPerDay, l.RecipientsPerDay},
		} {
			if f.v < 0 || f.v > MaxLimit {
				bad(prefix+"."+f.name, "%d is not from 0 (no limit) to %d", f.v, MaxLimit)
			}
		}
	}
	checkLimits("default", c.Default)
	for key, l := range c.Accounts {
		path := fmt.Sprintf("accounts.%q", key)
		if err := checkKey(key); err != nil {
			bad(path, "%v", err)
		}
		checkLimits(path, l)
	}
	if c.MaxAccounts < 1 || c.MaxAccounts > MaxMaxAccounts {
		bad("max_accounts", "%d is not from 1 to %d", c.MaxAccounts, MaxMaxAccounts)
	}
	return errors.Join(errs...)
}

// checkKey checks an Accounts key: a login or "@domain", lower-case, with
// no space or control character.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key (want a login or @domain)")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("key longer than %d bytes", MaxKeyLen)
	case !utf8.ValidString(key):
		return errors.New("key is not valid UTF-8")
	case strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("key contains a space or control character")
	case strings.ToLower(key) != key:
		return errors.New("key is not lower-case (logins are looked up lower-case)")
	}
	if dom, ok := strings.CutPrefix(key, "@"); ok {
		if dom == "" || strings.Contains(dom, "@") {
			return errors.New("not a login or @domain")
		}
	}
	return nil
}
