package api

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Firewall is what the API needs from the daemon's firewall.
type Firewall interface {
	// Show returns the ruleset mailgate wants and the kernel's, both in
	// nft syntax ("" when the kernel has no table inet mailgate).
	Show(now time.Time) (want, have string, err error)
	// Apply writes the ruleset and re-asserts the sets now.
	Apply(now time.Time) (added, removed int, err error)
}

// FirewallJSON answers GET /v1/firewall.
type FirewallJSON struct {
	Mode string `json:"mode"`
	Want string `json:"want"`
	Have string `json:"have"`
	// Diff is a line diff from have to want: lines with "+" are missing
	// in the kernel, lines with "-" are there and should not be; "" when
	// the kernel has what mailgate wants.
	Diff string `json:"diff"`
}

// ApplyJSON answers POST /v1/firewall/apply.
type ApplyJSON struct {
	Added   int `json:"added"`
	Removed int `json:"removed"`
}

var errFirewallOff = errors.New("the firewall is disabled: set [firewall] enabled = true (mailgate touches no firewall until then)")

// WithFirewall serves GET /v1/firewall and POST /v1/firewall/apply from
// fw, whose mode is mode; diff renders the difference. Without it both
// answer 409.
func (s *Server) WithFirewall(fw Firewall, mode string, diff func(want, have string) string) *Server {
	s.fw, s.fwMode, s.fwDiff = fw, mode, diff
	return s
}

func (s *Server) showFirewall(w http.ResponseWriter, _ *http.Request) {
	if s.fw == nil {
		writeError(w, http.StatusConflict, errFirewallOff)
		return
	}
	want, have, err := s.fw.Show(s.now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, FirewallJSON{Mode: s.fwMode, Want: want, Have: have, Diff: s.fwDiff(want, have)})
}

func (s *Server) applyFirewall(w http.ResponseWriter, _ *http.Request) {
	if s.fw == nil {
		writeError(w, http.StatusConflict, errFirewallOff)
		return
	}
	added, removed, err := s.fw.Apply(s.now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, ApplyJSON{Added: added, Removed: removed})
}

// Firewall fetches the wanted and the kernel's ruleset.
func (c *Client) Firewall(ctx context.Context) (FirewallJSON, error) {
	var out FirewallJSON
	return out, c.do(ctx, http.MethodGet, "/v1/firewall", nil, &out)
}

// ApplyFirewall has the daemon apply its ruleset now.
func (c *Client) ApplyFirewall(ctx context.Context) (ApplyJSON, error) {
	var out ApplyJSON
	return out, c.do(ctx, http.MethodPost, "/v1/firewall/apply", nil, &out)
}
