package api

import (
	"net/http"
	"time"

	"mailgate/internal/sendlimit"
)

// LimitLister is what the API needs from the sending limiter.
type LimitLister interface {
	List(now time.Time) []sendlimit.Usage
}

// LimitsJSON are an account's sending limits; 0 means no limit.
type LimitsJSON struct {
	MessagesPerHour   int `json:"messages_per_hour"`
	MessagesPerDay    int `json:"messages_per_day"`
	RecipientsPerHour int `json:"recipients_per_hour"`
	RecipientsPerDay  int `json:"recipients_per_day"`
}

// UsageJSON is what an authenticated sender sent in the sliding hour and
// day, against its limits.
type UsageJSON struct {
	Login          string     `json:"login"`
	Limits         LimitsJSON `json:"limits"`
	MessagesHour   int        `json:"messages_hour"`
	MessagesDay    int        `json:"messages_day"`
	RecipientsHour int        `json:"recipients_hour"`
	RecipientsDay  int        `json:"recipients_day"`
	// Over names the limits reached: messages_per_hour, messages_per_day,
	// recipients_per_hour, recipients_per_day.
	Over        []string   `json:"over"`
	Refused     int        `json:"refused"` // recipients refused for a limit
	LastRefused *time.Time `json:"last_refused"`
}

// FromUsage converts a sender's usage for the wire.
func FromUsage(u *sendlimit.Usage) UsageJSON {
	j := UsageJSON{Login: u.Login,
		Limits: LimitsJSON{MessagesPerHour: u.Limits.MessagesPerHour, MessagesPerDay: u.Limits.MessagesPerDay,
			RecipientsPerHour: u.Limits.RecipientsPerHour, RecipientsPerDay: u.Limits.RecipientsPerDay},
		MessagesHour: u.MessagesHour, MessagesDay: u.MessagesDay,
		RecipientsHour: u.RecipientsHour, RecipientsDay: u.RecipientsDay,
		Over: append([]string{}, u.Over...), Refused: u.Refused}
	if !u.LastRefused.IsZero() {
		t := u.LastRefused.UTC()
		j.LastRefused = &t
	}
	return j
}

// listLimits answers GET /v1/limits: every sender the limiter counts; an
// empty list when sending limits are off.
func (s *Server) listLimits(w http.ResponseWriter, _ *http.Request) {
	out := []UsageJSON{}
	if s.limits != nil {
		us := s.limits.List(s.now())
		out = make([]UsageJSON, len(us))
		for i := range us {
			out[i] = FromUsage(&us[i])
		}
	}
	writeJSON(w, http.StatusOK, out)
}
