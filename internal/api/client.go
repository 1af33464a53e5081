package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client talks to a running mailgate's admin API.
type Client struct {
	hc     *http.Client
	base   string
	token  string
	socket string
	remote bool   // a node's admin TCP listener (NewRemoteClient): errors name base
	user   string // who the CLI acts for (SUDO_USER), sent as X-Mailgate-User
}

// NewUnixClient returns a client for the admin socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{
		hc:     &http.Client{Transport: tr, Timeout: 5 * time.Minute},
		base:   "http://mailgate",
		socket: path,
		user:   os.Getenv("SUDO_USER"),
	}
}

// FileGroup names the group of the file (or socket) at path, or "" when
// it cannot be read.
func FileGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}

// NewTCPClient returns a client for the admin API at base (http://host:port)
// with a bearer token.
func NewTCPClient(base, token string) *Client {
	return &Client{hc: &http.Client{Timeout: 5 * time.Minute}, base: base, token: token}
}

// RemoteOptions configure NewRemoteClient.
type RemoteOptions struct {
	// Token is the node's [admin] token, sent as a bearer token.
	Token string
	// RootCAs verify an https server; nil: the system's roots.
	RootCAs *x509.CertPool
	// DialTimeout bounds connecting (and the TLS handshake); 0: 10 s.
	DialTimeout time.Duration
	// ReplyTimeout bounds waiting for a reply's headers once the request
	// is sent; 0: 5 minutes (an import of many rules takes a while).
	ReplyTimeout time.Duration
}

// NewRemoteClient returns a client for a node's admin TCP listener
// ([admin] listen) at base, an http:// or https:// URL of its host and
// port, e.g. from `mailgate --server`. It follows no redirects (the
// token goes to base and nowhere else).
func NewRemoteClient(base *url.URL, opt RemoteOptions) *Client {
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 10 * time.Second
	}
	if opt.ReplyTimeout <= 0 {
		opt.ReplyTimeout = 5 * time.Minute
	}
	d := &net.Dialer{Timeout: opt.DialTimeout}
	tr := &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: opt.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   opt.DialTimeout,
		ResponseHeaderTimeout: opt.ReplyTimeout,
		Proxy:                 nil, // the token goes to the node itself, never through HTTP(S)_PROXY
	}
	return &Client{
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the server answered with a redirect; give --server the node's admin listener itself")
		}},
		base:   strings.TrimSuffix(base.String(), "/"),
		token:  opt.Token,
		remote: true,
		user:   os.Getenv("SUDO_USER"),
	}
}

// APIError is an error reply from the server.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBytes))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// send makes one request (a JSON body when body is not nil) and returns
// the reply of a 2xx status; any other status is an *APIError, and a
// socket nobody answers on or the caller may not open is an error that
// says what to do.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.user != "" {
		req.Header.Set("X-Mailgate-User", c.user)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.socket != "" && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
			return nil, fmt.Errorf("mailgate is not running (nothing answers on %s); start it with 'systemctl start mailgate' or 'mailgate serve', or point --config/--socket at the right socket", c.socket)
		}
		if c.socket != "" && errors.Is(err, syscall.EACCES) {
			if g := FileGroup(c.socket); g != "" {
				return nil, fmt.Errorf("permission denied on the admin socket %s: run this as root, or as a member of the group %s (adduser $USER %s, then log in again)", c.socket, g, g)
			}
			return nil, fmt.Errorf("permission denied on the admin socket %s: run this as root, or as a member of the socket's group", c.socket)
		}
		if c.remote {
			return nil, c.remoteError(err)
		}
		return nil, err
	}
	if c.remote && resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("%s refused the token (HTTP 401): the token from --token-file or MAILGATE_TOKEN is not that node's [admin] token; nothing was changed", c.base)}
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var e ErrorJSON
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// remoteError says what went wrong reaching a node's admin listener.
func (c *Client) remoteError(err error) error {
	var ne net.Error
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing answers at %s (connection refused): is mailgate running there with [admin] listen on that address and port?", c.base)
	case errors.As(err, &ua), errors.As(err, &ci):
		return fmt.Errorf("%s: the server's TLS certificate is not trusted (%v): give its CA with --ca-file", c.base, err)
	case errors.As(err, &hn):
		return fmt.Errorf("%s: the server's TLS certificate is not for this host (%v)", c.base, hn)
	case errors.As(err, &rec), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s does not speak TLS (mailgate's admin listener is plain HTTP: https needs a TLS proxy in front of it, or use http:// on loopback)", c.base)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s (timed out): check the address, any firewall in between, and [admin] listen on that node; a change sent before the timeout may or may not have been made (check with the list command)", c.base)
	}
	return fmt.Errorf("%s: %w", c.base, err)
}

// AddRule adds one rule.
func (c *Client) AddRule(ctx context.Context, r RuleJSON) (RuleJSON, error) {
	var out RuleJSON
	return out, c.do(ctx, http.MethodPost, "/v1/rules", r, &out)
}

// AddRules adds rules in one transaction.
func (c *Client) AddRules(ctx context.Context, rs []RuleJSON) ([]RuleJSON, error) {
	var out []RuleJSON
	return out, c.do(ctx, http.MethodPost, "/v1/rules", rs, &out)
}

// Rules lists rules, of one account if account is not empty.
func (c *Client) Rules(ctx context.Context, account string) ([]RuleJSON, error) {
	var out []RuleJSON
	path := "/v1/rules"
	if account != "" {
		path += "?account=" + url.QueryEscape(account)
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// RemoveRule deletes rule id and returns it.
func (c *Client) RemoveRule(ctx context.Context, id int64) (RuleJSON, error) {
	var out RuleJSON
	return out, c.do(ctx, http.MethodDelete, "/v1/rules/"+strconv.FormatInt(id, 10), nil, &out)
}

// Explain asks for the verdict on an attempt and its checks.
func (c *Client) Explain(ctx context.Context, req ExplainRequest) (ExplainResponse, error) {
	var out ExplainResponse
	return out, c.do(ctx, http.MethodPost, "/v1/explain", req, &out)
}

// Audit returns the newest limit audit entries.
func (c *Client) Audit(ctx context.Context, limit int) ([]AuditJSON, error) {
	var out []AuditJSON
	return out, c.do(ctx, http.MethodGet, "/v1/audit?limit="+strconv.Itoa(limit), nil, &out)
}

// Version asks the daemon for its version.
func (c *Client) Version(ctx context.Context) (VersionJSON, error) {
	var out VersionJSON
	return out, c.do(ctx, http.MethodGet, "/v1/version", nil, &out)
}

// Bans lists the active bans.
func (c *Client) Bans(ctx context.Context) ([]BanJSON, error) {
	var out []BanJSON
	return out, c.do(ctx, http.MethodGet, "/v1/bans", nil, &out)
}

// AddBan bans an address, network or login by hand.
func (c *Client) AddBan(ctx context.Context, req BanRequest) (BanJSON, error) {
	var out BanJSON
	return out, c.do(ctx, http.MethodPost, "/v1/bans", req, &out)
}

// RemoveBan lifts ban id.
func (c *Client) RemoveBan(ctx context.Context, id int64) ([]BanJSON, error) {
	var out []BanJSON
	return out, c.do(ctx, http.MethodDelete, "/v1/bans/"+strconv.FormatInt(id, 10), nil, &out)
}

// RemoveBansFor lifts every ban of an address (ip) or a login (account).
func (c *Client) RemoveBansFor(ctx context.Context, ip, account string) ([]BanJSON, error) {
	var out []BanJSON
	q := url.Values{}
	if ip != "" {
		q.Set("ip", ip)
	}
	if account != "" {
		q.Set("account", account)
	}
	return out, c.do(ctx, http.MethodDelete, "/v1/bans?"+q.Encode(), nil, &out)
}

// Permits lists the valid relay permits.
func (c *Client) Permits(ctx context.Context) ([]PermitJSON, error) {
	var out []PermitJSON
	return out, c.do(ctx, http.MethodGet, "/v1/permits", nil, &out)
}

// AddPermit grants an address a relay permit by hand.
func (c *Client) AddPermit(ctx context.Context, req PermitRequest) (PermitJSON, error) {
	var out PermitJSON
	return out, c.do(ctx, http.MethodPost, "/v1/permits", req, &out)
}

// RemovePermit withdraws the relay permit covering ip and returns it.
func (c *Client) RemovePermit(ctx context.Context, ip string) (PermitJSON, error) {
	var out PermitJSON
	return out, c.do(ctx, http.MethodDelete, "/v1/permits?"+url.Values{"ip": {ip}}.Encode(), nil, &out)
}

// ReportLogin reports a successful login (the post-login hook), on the
// admin socket or the hook socket.
func (c *Client) ReportLogin(ctx context.Context, r LoginReport) (LoginResult, error) {
	var out LoginResult
	return out, c.do(ctx, http.MethodPost, "/v1/logins", r, &out)
}

// Limits lists the authenticated senders' usage against their sending
// limits; empty when sending limits are off.
func (c *Client) Limits(ctx context.Context) ([]UsageJSON, error) {
	var out []UsageJSON
	return out, c.do(ctx, http.MethodGet, "/v1/limits", nil, &out)
}

// Attack returns the state of "under attack".
func (c *Client) Attack(ctx context.Context) (AttackJSON, error) {
	var out AttackJSON
	return out, c.do(ctx, http.MethodGet, "/v1/attack", nil, &out)
}

// EndAttack ends "under attack" now; it stays off for under_attack_hold.
func (c *Client) EndAttack(ctx context.Context) (AttackJSON, error) {
	var out AttackJSON
	return out, c.do(ctx, http.MethodPost, "/v1/attack/end", nil, &out)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (StatusJSON, error) {
	var out StatusJSON
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}
