package policy

import (
	"strconv"
	"time"

	"mailgate/internal/abuse"
)

// Surge logs "under attack" starting or ending (by itself, or by hand
// when actor is not empty):
//
//	time=2026-11-22T03:58:45.123Z event=under_attack state=on failures_10m=312 usual_10m=4.2 threshold_10m=42
func (l *DecisionLog) Surge(now time.Time, s abuse.Surge, actor string) {
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendSurge(l.buf[:0], now, s, actor)
	l.w.Write(l.buf) //nolint:errcheck // as above
}

// AppendSurge appends the line for "under attack" starting or ending.
func AppendSurge(b []byte, now time.Time, s abuse.Surge, actor string) []byte {
	b = appendTime(b, now)
	b = append(b, " event=under_attack state="...)
	if s.On {
		b = append(b, "on"...)
	} else {
		b = append(b, "off"...)
	}
	b = append(b, " failures_10m="...)
	b = strconv.AppendInt(b, int64(s.Recent), 10)
	b = append(b, " usual_10m="...)
	b = strconv.AppendFloat(b, s.Usual, 'f', 1, 64)
	b = append(b, " threshold_10m="...)
	b = strconv.AppendInt(b, int64(s.Threshold), 10)
	if actor != "" {
		b = append(b, " by="...)
		b = appendValue(b, actor)
	}
	return append(b, '\n')
}
