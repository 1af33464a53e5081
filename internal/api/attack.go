package api

import (
	"net/http"
	"time"

	"mailgate/internal/abuse"
)

// AttackJSON is the state of "under attack" on the wire.
type AttackJSON struct {
	Enabled bool `json:"enabled"` // bruteforce.under_attack
	On      bool `json:"on"`
	// Since is when the current attack began; nil when off.
	Since *time.Time `json:"since"`
	// Failures is the count of the last 10 minutes, Usual the count of
	// an average 10 minutes of the day before, Threshold the count that
	// starts it.
	Failures  int     `json:"failures_10m"`
	Usual     float64 `json:"usual_10m"`
	Threshold int     `json:"threshold_10m"`
	// Ended is set by POST /v1/attack/end: whether it was on.
	Ended bool `json:"ended,omitempty"`
}

func fromSurge(s abuse.Surge) AttackJSON {
	j := AttackJSON{Enabled: s.Enabled, On: s.On, Failures: s.Recent, Usual: s.Usual, Threshold: s.Threshold}
	if s.On {
		t := s.Since
		j.Since = &t
	}
	return j
}

// WithBruteForce serves the tracker's part of GET /v1/status, the state
// of "under attack" (GET /v1/attack) and lifts it (POST
// /v1/attack/end). onEnd, if set, is told when an admin ended it (for the
// decision log).
func (s *Server) WithBruteForce(bf BruteForce, onEnd func(now time.Time, actor string)) *Server {
	s.bf, s.onSurgeEnd = bf, onEnd
	return s
}

func (s *Server) showAttack(w http.ResponseWriter, _ *http.Request) {
	if s.bf == nil {
		writeJSON(w, http.StatusOK, AttackJSON{})
		return
	}
	writeJSON(w, http.StatusOK, fromSurge(s.bf.SurgeState(s.now())))
}

func (s *Server) endAttack(w http.ResponseWriter, r *http.Request) {
	if s.bf == nil {
		writeJSON(w, http.StatusOK, AttackJSON{})
		return
	}
	now := s.now()
	was := s.bf.EndSurge(now)
	if was && s.onSurgeEnd != nil {
		s.onSurgeEnd(now, actor(r))
	}
	out := fromSurge(s.bf.SurgeState(now))
	out.Ended = was
	writeJSON(w, http.StatusOK, out)
}
