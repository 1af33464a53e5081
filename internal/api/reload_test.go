package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// POST /v1/reload calls the daemon's reload with the caller's name and
// passes its reply through; the body is ignored; a TCP caller needs the
// token like every admin call; a server without a reload answers 409.
func TestReload(t *testing.T) {
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	ctx := context.Background()
	if _, err := f.client.Reload(ctx); err == nil || !strings.Contains(err.Error(), "cannot reload") {
		t.Errorf("without WithReload: %v", err)
	}
	var actors []string
	f.srv.WithReload(func(ctx context.Context, actor string) ReloadJSON {
		actors = append(actors, actor)
		return ReloadJSON{OK: actors[0] != "", File: "/etc/m.toml", NeedsRestart: []string{"dovecot.listen"}}
	})
	r, err := f.client.Reload(ctx)
	if err != nil || !r.OK || r.File != "/etc/m.toml" || len(r.NeedsRestart) != 1 {
		t.Errorf("reload: %+v %v", r, err)
	}
	if len(actors) != 1 || actors[0] == "" || actors[0] == "api-token" {
		t.Errorf("actors %v", actors)
	}

	// Over TCP: the token, as for every admin call.
	f.srv.token = "0123456789abcdef"
	f.srv.tokenHash = sha256.Sum256([]byte(f.srv.token))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: f.srv.Handler(), ConnContext: ConnContext}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	var ae *APIError
	if _, err := NewTCPClient(base, "wrong").Reload(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("wrong token: %v", err)
	}
	if len(actors) != 1 {
		t.Errorf("a refused caller reloaded: %v", actors)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/reload", strings.NewReader(`{"path":"/tmp/evil.toml"}`))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(actors) != 2 || actors[1] != "api-token" {
		t.Errorf("with the token: %s, actors %v", resp.Status, actors)
	}
}
