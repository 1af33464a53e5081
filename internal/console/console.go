// Package console is mailgate's admin console in the browser: pages
// rendered on the server with html/template from files embedded in the
// binary, plain HTML forms (POST with a CSRF token), one small CSS file
// and no request to anywhere else. Every read and change goes through
// the admin API in this process (api.NewHandlerClient), under the
// signed-in user's name, so the audit trail and the API's checks are the
// same as for the CLI.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mailgate/internal/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console's pages are, on its listener.
const Prefix = "/console/"

const (
	sessionCookie = "mailgate_session"
	preCookie     = "mailgate_signin"
	maxFormBytes  = 64 << 10
)

// Config is what the console needs from the config file.
type Config struct {
	Token          string // the admin token, accepted as TokenUser's password; "" = no token sign-in
	UsersFile      string
	SessionTTL     time.Duration
	SecureCookie   bool
	SignInFailures int
	SignInWindow   time.Duration
	// DecisionLog returns where the decision lines are now.
	DecisionLog func() Source
}

// Server serves the console.
type Server struct {
	cfg   Config
	api   *api.Client
	users *Users
	sess  *sessions
	lim   *limiter
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
}

// New returns the console over the admin API handler h (api.Server's
// Handler).
func New(cfg Config, h http.Handler, log *slog.Logger, now func() time.Time) (*Server, error) {
	if cfg.DecisionLog == nil {
		cfg.DecisionLog = func() Source { return Source{} }
	}
	s := &Server{cfg: cfg, api: api.NewHandlerClient(h), users: NewUsers(cfg.UsersFile),
		sess: newSessions(cfg.SessionTTL), lim: newLimiter(cfg.SignInFailures, cfg.SignInWindow),
		log: log, now: now, pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return s, nil
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"tsp": func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
}

// Handler returns the console's routes, all under Prefix.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix+"signin", s.signinForm)
	mux.HandleFunc("POST "+Prefix+"signin", s.signin)
	mux.HandleFunc("POST "+Prefix+"signout", s.user(s.signout))
	mux.HandleFunc("GET "+Prefix+"{$}", s.user(s.overview))
	mux.HandleFunc("GET "+Prefix+"bans", s.user(s.bans))
	mux.HandleFunc("POST "+Prefix+"bans/add", s.user(s.addBan))
	mux.HandleFunc("POST "+Prefix+"bans/lift", s.user(s.liftBan))
	mux.HandleFunc("GET "+Prefix+"rules", s.user(s.rules))
	mux.HandleFunc("POST "+Prefix+"rules/add", s.user(s.addRule))
	mux.HandleFunc("POST "+Prefix+"rules/remove", s.user(s.removeRule))
	mux.HandleFunc("GET "+Prefix+"account", s.user(s.account))
	mux.HandleFunc("GET "+Prefix+"permits", s.user(s.permits))
	mux.HandleFunc("POST "+Prefix+"permits/add", s.user(s.addPermit))
	mux.HandleFunc("POST "+Prefix+"permits/remove", s.user(s.removePermit))
	mux.HandleFunc("GET "+Prefix+"log", s.user(s.decisionLog))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	})
	return headers(mux)
}

// headers sets what every answer carries: no script, style or image from
// anywhere but here, no framing, no caching of pages.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// req is one signed-in request.
type req struct {
	w    http.ResponseWriter
	r    *http.Request
	id   string // the session cookie's value
	sess session
	ctx  context.Context // carries the actor for the API
}

// user lets signed-in requests through: a GET without a session goes to
// the sign-in page, a POST without one or without its CSRF token is 403
// and changes nothing.
func (s *Server) user(h func(*req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		c, err := r.Cookie(sessionCookie)
		var ss session
		ok := err == nil
		if ok {
			ss, ok = s.sess.get(c.Value, now)
		}
		if ok && ss.name != TokenUser {
			// Removed from the users file, or its password changed:
			// the session ends now, not when it expires.
			if cur, err := s.users.current(ss.name, ss.hash); !cur {
				s.sess.remove(c.Value)
				if err != nil {
					s.log.Error("console: session ended: the users file cannot be read", "user", ss.name, "err", err)
				} else {
					s.log.Info("console: session ended: the user was removed or its password changed", "user", ss.name)
				}
				ok = false
			}
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				s.fail(w, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !ok || !tokenEqual(r.PostForm.Get("csrf"), ss.csrf) {
				s.log.Warn("console: POST refused: no session or a wrong CSRF token", "path", r.URL.Path, "client", r.RemoteAddr)
				s.fail(w, http.StatusForbidden, "Refused: this form has no valid CSRF token (or your session ended). Nothing was changed. Reload the page and try again.")
				return
			}
		}
		if !ok {
			http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
			return
		}
		h(&req{w: w, r: r, id: c.Value, sess: ss, ctx: api.WithActor(r.Context(), "console:"+ss.name)})
	}
}

// fail answers with a plain error page.
func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	s.pages["error"].ExecuteTemplate(w, "layout", view{Title: http.StatusText(code), Data: msg}) //nolint:errcheck // the client went away
}

// view is what every page template gets.
type view struct {
	Title string
	Nav   string
	User  string
	CSRF  string
	Flash string
	Error string
	Data  any
}

func (s *Server) render(q *req, page, title string, data any, errs ...error) {
	v := view{Title: title, Nav: page, User: q.sess.name, CSRF: q.sess.csrf, Flash: s.sess.takeFlash(q.id), Data: data}
	for _, err := range errs {
		if err != nil {
			v.Error = errText(err)
			break
		}
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.pages[page].ExecuteTemplate(q.w, "layout", v); err != nil {
		s.log.Error("console: rendering", "page", page, "err", err)
	}
}

func errText(err error) string {
	var ae *api.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// done ends a change: the message for the next page, then a redirect.
func (s *Server) done(q *req, to, msg string, err error) {
	if err != nil {
		msg = "Failed: " + errText(err)
	}
	s.sess.setFlash(q.id, msg)
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
}

// back is where a form asks to go after a change: a console path, or def.
func back(r *http.Request, def string) string {
	b := r.PostForm.Get("back")
	if strings.HasPrefix(b, Prefix) && !strings.ContainsAny(b, "\\\r\n") && !strings.Contains(b, "//") && len(b) < 1024 {
		return b
	}
	return def
}

func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func (s *Server) secure(r *http.Request) bool {
	return s.cfg.SecureCookie || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

type signinView struct {
	Pre, Name string
}

func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	s.signinPage(w, r, http.StatusOK, "", "")
}

// signinPage shows the sign-in form with a new pre-sign-in token (a
// cookie and a form field that must match: a page elsewhere cannot sign
// a browser in under the attacker's account).
func (s *Server) signinPage(w http.ResponseWriter, r *http.Request, code int, name, msg string) {
	pre := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r), MaxAge: 3600})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	s.pages["signin"].ExecuteTemplate(w, "layout", view{Title: "Sign in", Nav: "signin", Error: msg, Data: signinView{Pre: pre, Name: name}}) //nolint:errcheck // the client went away
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	c, err := r.Cookie(preCookie)
	if err != nil || !tokenEqual(c.Value, r.PostForm.Get("pre")) {
		s.signinPage(w, r, http.StatusForbidden, "", "This sign-in form has expired; please try again.")
		return
	}
	name := strings.ToLower(strings.TrimSpace(r.PostForm.Get("name")))
	pw := r.PostForm.Get("password")
	if len(name) > 64 {
		name = name[:64]
	}
	client := clientAddr(r)
	keys := []string{addrKey(client), "u:" + name}
	if s.lim.take(now, keys...) {
		s.log.Warn("console: sign-in refused: too many failures", "user", name, "client", client)
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.SignInWindow.Seconds())))
		s.signinPage(w, r, http.StatusTooManyRequests, name, "Too many failed sign-ins. Try again later.")
		return
	}
	ok := false
	hash := ""
	if name == TokenUser {
		ok = s.cfg.Token != "" && len(pw) <= MaxPasswordLen && tokenEqual(pw, s.cfg.Token)
	} else if len(pw) > 0 && len(pw) <= MaxPasswordLen {
		var uerr error
		hash, ok, uerr = s.users.check(name, []byte(pw))
		if uerr != nil {
			s.log.Error("console: users file", "err", uerr)
		}
	}
	if !ok {
		s.log.Warn("console: sign-in failed", "user", name, "client", client)
		s.signinPage(w, r, http.StatusUnauthorized, name, "Sign-in failed: wrong name or password.")
		return
	}
	s.lim.undo(keys...) // take counted it as a failure
	id, _ := s.sess.create(name, hash, now)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r), MaxAge: int(s.cfg.SessionTTL.Seconds())})
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	s.log.Info("console: signed in", "user", name, "client", client)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (s *Server) signout(q *req) {
	s.sess.remove(q.id)
	http.SetCookie(q.w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(q.r)})
	s.log.Info("console: signed out", "user", q.sess.name)
	http.Redirect(q.w, q.r, Prefix+"signin", http.StatusSeeOther)
}

func accountLink(login string) string {
	return Prefix + "account?login=" + url.QueryEscape(login)
}
