package api

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRemoteClientErrors: what the CLI says when a node's admin listener
// cannot be used: nothing listens, the token is wrong, no reply comes,
// the server redirects, the certificate is not trusted, the server does
// not speak TLS.
func TestRemoteClientErrors(t *testing.T) {
	ctx := context.Background()
	// Nothing listens: a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	_, err = NewRemoteClient(mustURL(t, closed), RemoteOptions{Token: "x"}).Version(ctx)
	if err == nil || !strings.Contains(err.Error(), "nothing answers at "+closed+" (connection refused)") {
		t.Errorf("closed port: %v", err)
	}

	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/v1/version":
			writeError(w, http.StatusUnauthorized, errors.New("a valid bearer token is required"))
		case "/v1/status":
			http.Redirect(w, r, "http://192.0.2.1/v1/status", http.StatusFound)
		default:
			<-r.Context().Done() // never answers
		}
	}))
	defer srv.Close()
	c := NewRemoteClient(mustURL(t, srv.URL+"/"), RemoteOptions{Token: "tok-123", ReplyTimeout: 50 * time.Millisecond})
	_, err = c.Version(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), srv.URL+" refused the token (HTTP 401)") {
		t.Errorf("wrong token: %v", err)
	}
	if gotAuth != "Bearer tok-123" {
		t.Errorf("Authorization %q", gotAuth)
	}
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("redirect: %v", err)
	}
	if _, err := c.Bans(ctx); err == nil || !strings.Contains(err.Error(), "no answer from "+srv.URL+" (timed out)") {
		t.Errorf("no reply: %v", err)
	}

	// https: a certificate no CA given vouches for, then the right CA.
	tsrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, VersionJSON{Version: "tls"})
	}))
	defer tsrv.Close()
	if _, err := NewRemoteClient(mustURL(t, tsrv.URL), RemoteOptions{Token: "x"}).Version(ctx); err == nil || !strings.Contains(err.Error(), "not trusted") || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("untrusted certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(tsrv.Certificate())
	if v, err := NewRemoteClient(mustURL(t, tsrv.URL), RemoteOptions{Token: "x", RootCAs: pool}).Version(ctx); err != nil || v.Version != "tls" {
		t.Errorf("trusted CA: %+v %v", v, err)
	}
	// https to a plain http listener.
	plain := strings.Replace(srv.URL, "http://", "https://", 1)
	if _, err := NewRemoteClient(mustURL(t, plain), RemoteOptions{Token: "x"}).Version(ctx); err == nil || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Errorf("https to http: %v", err)
	}
}
