package maillog

import (
	"bytes"
	"strings"
	"unsafe"
)

// Small helpers over []byte that take string literals without converting
// them: []byte(s) of a literal longer than 32 bytes is a heap allocation.

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

// view is b as a string for the duration of a call that keeps no
// reference to it (strings.Index and LastIndex do not).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func indexString(b []byte, s string) int { return strings.Index(view(b), s) }

func lastIndexString(b []byte, s string) int { return strings.LastIndex(view(b), s) }

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func trimPrefix(b []byte, s string) []byte {
	if hasPrefix(b, s) {
		return b[len(s):]
	}
	return b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// atoi parses a short run of digits; it stops at the first non-digit and
// saturates instead of overflowing.
func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			break
		}
		if n > 1e8 {
			return 1e9
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// digitsLen is the length of the run of digits at b's start.
func digitsLen(b []byte) int {
	i := 0
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}
