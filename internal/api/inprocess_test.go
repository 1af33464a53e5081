package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// The in-process client acts under the name its context carries; a TCP
// request without the token is still refused, and a header cannot stand
// in for the context value.
func TestHandlerClientActor(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := rules.NewIndex()
	book := NewRulebook(st, idx, nil)
	tracker := abuse.New(abuse.DefaultConfig())
	engine := policy.New(idx, nil).WithAbuse(tracker, true, time.Minute, 5*time.Second)
	srv := NewServer(book, NewBanbook(st, tracker), engine, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "a-token-of-16-chars").
		WithBruteForce(tracker, nil)
	c := NewHandlerClient(srv.Handler())
	ctx := WithActor(context.Background(), "console:alice")
	r, err := c.AddRule(ctx, RuleJSON{Account: "bob@example.com", Service: "imap", Action: "deny", Match: "203.0.113.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if r.CreatedBy != "console:alice" {
		t.Errorf("created by %q, want console:alice", r.CreatedBy)
	}
	var ae *APIError
	if _, err := c.Rules(context.Background(), ""); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("without an actor: %v, want 401", err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/v1/rules", nil)
	req.Header.Set("X-Mailgate-User", "console:alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("TCP without token: %s, want 401", resp.Status)
	}

	// Known-good addresses of one login, most recent first.
	now := time.Now()
	tracker.LoadKnownGood([]abuse.KnownGood{
		{Login: "bob@example.com", Prefix: netip.MustParsePrefix("198.51.100.7/32"), Last: now.Add(-time.Hour)},
		{Login: "bob@example.com", Prefix: netip.MustParsePrefix("198.51.100.8/32"), Last: now},
		{Login: "carol@example.com", Prefix: netip.MustParsePrefix("198.51.100.9/32"), Last: now},
	})
	kg, err := c.KnownGood(ctx, "Bob@Example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(kg) != 2 || kg[0].IP != "198.51.100.8" || kg[1].IP != "198.51.100.7" {
		t.Errorf("known good %+v", kg)
	}
	if _, err := c.KnownGood(ctx, ""); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("no account: %v, want 400", err)
	}
}
