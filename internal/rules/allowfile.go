package rules

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of ReadUserAllowed.
const (
	maxAllowFileLine  = 4096
	maxAllowFileLines = 1_000_000
)

// ReadUserAllowed reads the per-user exception file of the nginx
// country-limit script mailgate replaces (seed 002, user-allowed.php):
// one "login|CC" (an extra allowed country) or "login|IP" (an extra
// allowed address) per line. Like the script, it ignores whitespace
// anywhere in a line, empty lines and PHP tag lines ("<?php", "?>"), and
// lines starting with '#' or "//" are comments. Any other line that is
// not login|value is an error naming the line. It returns extra rules for
// every service; each rule's Comment names its line.
func ReadUserAllowed(r io.Reader) ([]Rule, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxAllowFileLine)
	var out []Rule
	line := 0
	for sc.Scan() {
		line++
		if line > maxAllowFileLines {
			return nil, fmt.Errorf("more than %d lines", maxAllowFileLines)
		}
		s := strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\r', '\n', 0, '\v', '\f':
				return -1
			}
			return r
		}, sc.Text())
		if s == "" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "<?") || s == "?>" {
			continue
		}
		login, value, ok := strings.Cut(s, "|")
		if !ok || login == "" || value == "" || strings.Contains(value, "|") {
			return nil, fmt.Errorf("line %d: %q is not login|COUNTRY or login|IP", line, clip(s))
		}
		acct, err := NormalizeAccount(login)
		if err != nil {
			return nil, fmt.Errorf("line %d: login: %w", line, err)
		}
		rl := Rule{Account: acct, Action: Extra, Comment: fmt.Sprintf("user-allowed line %d", line)}
		if len(value) == 2 && isLetter(value[0]) && isLetter(value[1]) {
			rl.Countries = strings.ToUpper(value)
		} else if rl.Match, err = ParseMatch(value); err != nil {
			return nil, fmt.Errorf("line %d: %q is neither a country code nor an address: %w", line, clip(value), err)
		}
		if err := rl.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, rl)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", line+1, maxAllowFileLine)
		}
		return nil, err
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
