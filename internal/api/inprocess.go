package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/rules"
)

type actorKey struct{}

// WithActor returns ctx naming who makes the requests sent with it through
// a client from NewHandlerClient (the admin console's signed-in user). A
// context value cannot come from the network: only code in the daemon's
// process sets it, and the API then trusts it as it trusts a unix-socket
// peer.
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

func actorOf(r *http.Request) (string, bool) {
	name, ok := r.Context().Value(actorKey{}).(string)
	return name, ok && name != ""
}

// NewHandlerClient returns a client that serves its requests with h (the
// admin API's Handler) in this process, without a connection. Requests
// must carry WithActor in their context; without it they are treated as
// coming over TCP without a token.
func NewHandlerClient(h http.Handler) *Client {
	return &Client{hc: &http.Client{Transport: handlerTransport{h}}, base: "http://mailgate"}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}}
	if req.Body == nil {
		req.Body = http.NoBody
	}
	t.h.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)), StatusCode: rec.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.body.Len()+len(b) > maxRequestBytes {
		return 0, errors.New("in-process reply too large")
	}
	return r.body.Write(b)
}

// KnownGoodJSON is one address (or IPv6 network) an account logged in
// from successfully: its failures there are not counted toward a ban.
type KnownGoodJSON struct {
	Login string    `json:"login"`
	IP    string    `json:"ip"`
	Last  time.Time `json:"last"`
}

type knownGoodLister interface{ KnownGood() []abuse.KnownGood }

// listKnownGood serves GET /v1/knowngood?account=A: the addresses the
// login logged in from, most recent first.
func (s *Server) listKnownGood(w http.ResponseWriter, r *http.Request) {
	acct := rules.NormalizeLogin(r.URL.Query().Get("account"))
	if acct == "" {
		writeError(w, http.StatusBadRequest, errors.New("account: missing"))
		return
	}
	out := []KnownGoodJSON{}
	if kg, ok := s.bf.(knownGoodLister); ok {
		for _, e := range kg.KnownGood() {
			if e.Login == acct {
				ip := e.Prefix.String()
				if e.Prefix.IsSingleIP() {
					ip = e.Prefix.Addr().String()
				}
				out = append(out, KnownGoodJSON{Login: e.Login, IP: ip, Last: e.Last.UTC()})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b KnownGoodJSON) int { return b.Last.Compare(a.Last) })
	writeJSON(w, http.StatusOK, out)
}

// KnownGood lists the addresses account logged in from, most recent first.
func (c *Client) KnownGood(ctx context.Context, account string) ([]KnownGoodJSON, error) {
	var out []KnownGoodJSON
	err := c.do(ctx, http.MethodGet, "/v1/knowngood?account="+url.QueryEscape(account), nil, &out)
	return out, err
}
