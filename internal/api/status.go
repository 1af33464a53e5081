package api

import (
	"net/http"
	"time"

	"mailgate/internal/abuse"
)

// BruteForce is what the API needs from the brute-force tracker: the
// state of "under attack" and what it tracks. *abuse.Tracker is one.
type BruteForce interface {
	SurgeState(now time.Time) abuse.Surge
	EndSurge(now time.Time) bool
	Stats() abuse.Stats
	Config() abuse.Config
}

// StatusJSON is GET /v1/status.
type StatusJSON struct {
	Version       string          `json:"version"`
	Started       time.Time       `json:"started"`
	UptimeSeconds int64           `json:"uptime_seconds"`
	BruteForce    *BruteForceJSON `json:"bruteforce,omitempty"`
}

// BruteForceJSON is the brute-force tracker's part of the status.
type BruteForceJSON struct {
	Addresses   int          `json:"tracked_addresses"`
	Logins      int          `json:"tracked_logins"`
	Pairs       int          `json:"tracked_pairs"`
	KnownGood   int          `json:"known_good"`
	Stale       int          `json:"stale_clients"`
	AddrBans    int          `json:"address_bans"`
	LoginBans   int          `json:"login_bans"`
	Rules       []WindowJSON `json:"rules"`
	UnderAttack AttackJSON   `json:"under_attack"`
}

// WindowJSON is one counting rule: so many failures within a window ban
// for a while.
type WindowJSON struct {
	Rule          string `json:"rule"` // the ban reason it writes
	Counts        string `json:"counts"`
	Failures      int    `json:"failures"`
	Window        string `json:"window"`
	WindowSeconds int64  `json:"window_seconds"`
	Ban           string `json:"ban"`
	BanSeconds    int64  `json:"ban_seconds"`
}

func windows(c abuse.Config) []WindowJSON {
	var out []WindowJSON
	add := func(rule, counts string, failures int, window, ban time.Duration) {
		if failures > 0 {
			out = append(out, WindowJSON{Rule: rule, Counts: counts, Failures: failures,
				Window: window.String(), WindowSeconds: int64(window / time.Second), Ban: ban.String(), BanSeconds: int64(ban / time.Second)})
		}
	}
	add(abuse.ReasonAddrFailures, "failures from one address", c.AddrFailures, c.AddrWindow, c.AddrBan)
	add(abuse.ReasonAddrHour, "failures from one address", c.AddrHourFailures, c.HourWindow, c.AddrHourBan)
	add(abuse.ReasonAddrDay, "failures from one address", c.AddrDayFailures, c.DayWindow, c.AddrDayBan)
	add(abuse.ReasonLoginAttack, "failures of one login from 2+ addresses", c.LoginFailures, c.LoginWindow, c.LoginBan)
	add(abuse.ReasonLoginHour, "failures of one login from strangers", c.LoginHourFailures, c.HourWindow, c.LoginHourBan)
	add(abuse.ReasonLoginDay, "failures of one login from strangers", c.LoginDayFailures, c.DayWindow, c.LoginDayBan)
	add(abuse.ReasonSpray, "logins failing from one address", c.SprayLogins, c.SprayWindow, c.SprayBan)
	return out
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	out := StatusJSON{Version: s.version, Started: s.started.UTC(), UptimeSeconds: int64(now.Sub(s.started) / time.Second)}
	if s.bf != nil {
		st := s.bf.Stats()
		out.BruteForce = &BruteForceJSON{Addresses: st.Addrs, Logins: st.Logins, Pairs: st.Pairs, KnownGood: st.KnownGood,
			Stale: st.Stale, AddrBans: st.AddrBans, LoginBans: st.LoginBans,
			Rules: windows(s.bf.Config()), UnderAttack: fromSurge(s.bf.SurgeState(now))}
	}
	writeJSON(w, http.StatusOK, out)
}
