package api

import (
	"time"

	"mailgate/internal/store"
)

// RuleSyncJSON is the rule sync's state in GET /v1/status: how this node
// hears of the rule changes other nodes commit to PostgreSQL
// (docs/store-postgres.md).
type RuleSyncJSON struct {
	Store     string    `json:"store"`     // PostgreSQL user@host:port/db
	Connected bool      `json:"connected"` // listening, and resynced since the connect
	Since     time.Time `json:"since,omitzero"`
	// SinceSeconds is how long it has been connected or disconnected.
	SinceSeconds int64     `json:"since_seconds,omitempty"`
	Resyncs      int64     `json:"resyncs"` // full reloads: one per (re)connect, and on request
	Notices      int64     `json:"notices"` // other nodes' changes applied
	LastNotice   time.Time `json:"last_notice,omitzero"`
	// LagMS is the last applied change's delay from the other node's
	// commit to this node's index, in milliseconds.
	LagMS     int64  `json:"lag_ms"`
	LastError string `json:"last_error,omitempty"` // why it was last disconnected
}

// FromRuleSync converts the rule sync's state at now for the wire.
func FromRuleSync(name string, s store.RuleSyncStatus, now time.Time) *RuleSyncJSON {
	j := &RuleSyncJSON{Store: name, Connected: s.Connected, Resyncs: s.Resyncs, Notices: s.Notices,
		LagMS: s.Lag.Milliseconds(), LastError: s.LastError}
	if !s.Since.IsZero() {
		j.Since = s.Since.UTC()
		j.SinceSeconds = int64(now.Sub(s.Since) / time.Second)
	}
	if !s.LastNotice.IsZero() {
		j.LastNotice = s.LastNotice.UTC()
	}
	return j
}
