package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"mailgate/internal/password"
)

// maxPasswordBody bounds a POST /v1/password/check body: a password of
// password.MaxLen bytes, every byte escaped (\u00XX is 6), a login and
// the JSON around them.
const maxPasswordBody = 6*password.MaxLen + 2048

// MaxWeakDays bounds GET /v1/password/weak?days=.
const MaxWeakDays = 3650

// PasswordCheck is the body of POST /v1/password/check.
type PasswordCheck struct {
	Login    string `json:"login"`
	Password string `json:"password"`
}

// PasswordResult is its answer: password.Result.
type PasswordResult = password.Result

// WeakJSON is one login of GET /v1/password/weak.
type WeakJSON struct {
	Login    string    `json:"login"`
	LastSeen time.Time `json:"last_seen"`
}

// WithPassword serves POST /v1/password/check with c, limited by lim
// (nil: no limit), and GET /v1/password/weak from flags (nil: an empty
// list, the login check is off). Without it both answer 409.
func (s *Server) WithPassword(c *password.Checker, lim *password.Limiter, flags *password.Flags, keepDays func() int) *Server {
	s.pw, s.pwLimit, s.pwFlags, s.pwDays = c, lim, flags, keepDays
	return s
}

// PasswordHandler serves POST /v1/password/check and nothing else,
// without authentication, for [password] check_listen: a webmail or a
// control panel gets the check without the admin token.
func (s *Server) PasswordHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/password/check", s.checkPassword)
	return mux
}

// checkPassword answers POST /v1/password/check. Neither the body nor
// the password is logged or kept, and no error quotes them.
func (s *Server) checkPassword(w http.ResponseWriter, r *http.Request) {
	if s.pw == nil {
		writeError(w, http.StatusConflict, errors.New("the password policy is not configured"))
		return
	}
	if s.pwLimit != nil && !s.pwLimit.Allow(s.now()) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, errors.New("too many password checks; try again in a second (password.check_rate)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPasswordBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: larger than %d bytes", maxPasswordBody))
		return
	}
	var in PasswordCheck
	if err := strictUnmarshal(body, &in); err != nil {
		clear(body)
		writeError(w, http.StatusBadRequest, errors.New("request body: want a JSON object {\"login\": \"…\", \"password\": \"…\"}"))
		return
	}
	clear(body)
	if len(in.Login) > 512 {
		writeError(w, http.StatusBadRequest, errors.New("login: longer than 512 bytes"))
		return
	}
	res, err := s.pw.Check(in.Password, in.Login)
	in.Password = ""
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// listWeak answers GET /v1/password/weak?days=N (default: the configured
// weak_days).
func (s *Server) listWeak(w http.ResponseWriter, r *http.Request) {
	if s.pwFlags == nil {
		writeError(w, http.StatusConflict, errors.New("weak passwords are not checked at login (password.check_at_login = false)"))
		return
	}
	days := 0
	if s.pwDays != nil {
		days = s.pwDays()
	}
	if d := r.URL.Query().Get("days"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > MaxWeakDays {
			writeError(w, http.StatusBadRequest, fmt.Errorf("days: want 1 to %d", MaxWeakDays))
			return
		}
		days = n
	}
	since := s.now().Add(-time.Duration(days) * 24 * time.Hour)
	out := []WeakJSON{}
	for _, x := range s.pwFlags.List(since) {
		out = append(out, WeakJSON{Login: x.Login, LastSeen: x.At.UTC()})
	}
	writeJSON(w, http.StatusOK, out)
}

// CheckPassword asks the policy about a password.
func (c *Client) CheckPassword(ctx context.Context, in PasswordCheck) (PasswordResult, error) {
	var out PasswordResult
	err := c.do(ctx, http.MethodPost, "/v1/password/check", in, &out)
	return out, err
}

// WeakLogins lists the logins seen with a weak password in the last days
// (0: the configured weak_days).
func (c *Client) WeakLogins(ctx context.Context, days int) ([]WeakJSON, error) {
	var out []WeakJSON
	path := "/v1/password/weak"
	if days > 0 {
		path += "?" + url.Values{"days": {strconv.Itoa(days)}}.Encode()
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
