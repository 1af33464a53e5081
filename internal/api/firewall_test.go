package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

type fakeFirewall struct {
	want, have string
	applied    int
	err        error
}

func (f *fakeFirewall) Show(time.Time) (string, string, error) { return f.want, f.have, f.err }
func (f *fakeFirewall) Apply(time.Time) (int, int, error) {
	f.applied++
	return 3, 1, f.err
}

func TestFirewallEndpoints(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := rules.NewIndex()
	newSrv := func() *Server {
		return NewServer(NewRulebook(st, idx, nil), nil, policy.New(idx, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "")
	}
	off := serveUnix(t, newSrv().Handler())
	_, err = off.Firewall(ctx)
	wantAPIError(t, "show, off", err, http.StatusConflict, "firewall is disabled")
	_, err = off.ApplyFirewall(ctx)
	wantAPIError(t, "apply, off", err, http.StatusConflict, "firewall is disabled")

	fw := &fakeFirewall{want: "a\nb\n", have: "a\nc\n"}
	c := serveUnix(t, newSrv().WithFirewall(fw, "protected", func(want, have string) string { return "diff(" + want + "|" + have + ")" }).Handler())
	got, err := c.Firewall(ctx)
	if err != nil || got.Mode != "protected" || got.Want != fw.want || got.Have != fw.have || got.Diff != "diff(a\nb\n|a\nc\n)" {
		t.Fatalf("show: %+v %v", got, err)
	}
	res, err := c.ApplyFirewall(ctx)
	if err != nil || res != (ApplyJSON{Added: 3, Removed: 1}) || fw.applied != 1 {
		t.Fatalf("apply: %+v %v (applied %d)", res, err, fw.applied)
	}
	fw.err = errors.New("netlink: operation not permitted")
	_, err = c.ApplyFirewall(ctx)
	wantAPIError(t, "apply error", err, http.StatusInternalServerError, "operation not permitted")
}
