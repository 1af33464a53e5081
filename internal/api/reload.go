package api

import (
	"context"
	"errors"
	"net/http"
)

// ReloadJSON is the answer to POST /v1/reload.
type ReloadJSON struct {
	// OK is false when the config was refused: Errors says why, and the
	// old config keeps running unchanged.
	OK     bool     `json:"ok"`
	File   string   `json:"file"`   // the file read ("" when none: built-in defaults)
	Errors []string `json:"errors"` // the problems `mailgate config check` reports
	// Applied lists the settings that changed and now apply (config
	// keys, such as "bruteforce.addr_failures"); NeedsRestart those that
	// changed but apply only after a restart. Both are empty when the
	// file did not change.
	Applied      []string `json:"applied"`
	NeedsRestart []string `json:"needs_restart"`
	// Warnings are config warnings and the parts that could not be
	// applied (a firewall the kernel refused: every reconcile tries
	// again).
	Warnings []string `json:"warnings"`
}

// WithReload serves POST /v1/reload through f, which re-reads the config
// file and applies it. The request body is ignored: nothing a client
// sends changes what a reload does.
func (s *Server) WithReload(f func(ctx context.Context, actor string) ReloadJSON) *Server {
	s.reloadFn = f
	return s
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.reloadFn == nil {
		writeError(w, http.StatusConflict, errors.New("this daemon cannot reload its config"))
		return
	}
	// The reload outlives a client that hangs up: half a reload is not
	// a state to leave behind.
	writeJSON(w, http.StatusOK, s.reloadFn(context.WithoutCancel(r.Context()), actor(r)))
}

// Reload asks the daemon to re-read its config file and apply it.
func (c *Client) Reload(ctx context.Context) (ReloadJSON, error) {
	var out ReloadJSON
	return out, c.do(ctx, http.MethodPost, "/v1/reload", nil, &out)
}
