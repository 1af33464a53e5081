package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
	"unicode/utf8"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// MaxLoginReportBytes bounds the body of POST /v1/logins.
const MaxLoginReportBytes = 4 << 10

// LoginReport is a successful login, reported by `mailgate hook postlogin`
// from Dovecot's post-login script (protocols.md §4.2).
type LoginReport struct {
	Login   string `json:"login"`
	IP      string `json:"ip"`
	Service string `json:"service"`        // the protocol: imap, pop3, …
	Door    string `json:"door,omitempty"` // who saw the login; default "hook"
}

// LoginResult says what a reported login did to its address's permit.
type LoginResult struct {
	Outcome string      `json:"outcome"`          // relay.Outcome's name
	Permit  *PermitJSON `json:"permit,omitempty"` // when granted or refreshed
}

// reportedLogin is a checked LoginReport.
type reportedLogin struct {
	login string
	svc   rules.Service
	addr  netip.Addr
	door  string
}

// check validates a report strictly; errors name the field.
func (r *LoginReport) check() (reportedLogin, error) {
	var l reportedLogin
	if len(r.Login) > rules.MaxAccountLen+64 || !utf8.ValidString(r.Login) {
		return l, errors.New("login: too long or not UTF-8")
	}
	l.login = rules.NormalizeLogin(r.Login)
	switch {
	case l.login == "":
		return l, errors.New("login: empty")
	case len(l.login) > rules.MaxAccountLen:
		return l, fmt.Errorf("login: longer than %d bytes", rules.MaxAccountLen)
	}
	for _, c := range l.login {
		if c < 0x20 || c == 0x7f {
			return l, fmt.Errorf("login: %q has a control character", l.login)
		}
	}
	var err error
	if l.addr, err = rules.ParseAddr(r.IP); err != nil {
		return l, fmt.Errorf("ip: %.64q is not an IP address", r.IP)
	}
	if l.svc = rules.ProtocolService(r.Service); l.svc == rules.OtherService {
		return l, fmt.Errorf("service: %.32q is not imap, pop3, smtp, submission or sieve", r.Service)
	}
	l.door = r.Door
	if l.door == "" {
		l.door = "hook"
	}
	if !isDoorName(l.door) {
		return l, fmt.Errorf("door: %.40q is not a door name (lower-case letters, digits, '-', at most 32)", r.Door)
	}
	if l.door == relay.DoorManual {
		return l, fmt.Errorf("door: %q is for permits added with 'mailgate permit add'", r.Door)
	}
	return l, nil
}

func isDoorName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// serveLogin answers POST /v1/logins on the admin API and the hook socket.
//
// forceDoor, when set, replaces the report's door: the hook socket is open
// to the Dovecot user, whose reports are the hook's whatever they say.
func serveLogin(w http.ResponseWriter, r *http.Request, onLogin OnLoginFunc, log *slog.Logger, now time.Time, forceDoor string) {
	if onLogin == nil {
		writeError(w, http.StatusConflict, errPermitsOff)
		return
	}
	var in LoginReport
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxLoginReportBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w", err))
		return
	}
	if err := strictUnmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	if forceDoor != "" {
		in.Door = forceDoor
	}
	l, err := in.check()
	if err != nil {
		log.Warn("bad login report", "err", err)
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, o := onLogin(l.login, l.svc, l.addr, l.door, now)
	out := LoginResult{Outcome: o.String()}
	if o == relay.Granted || o == relay.Refreshed {
		j := FromPermit(&p, now)
		out.Permit = &j
	}
	writeJSON(w, http.StatusOK, out)
}

// HookHandler serves only POST /v1/logins, for the hook socket ([relay]
// hook_socket) that Dovecot's post-login script reaches: whoever can
// connect to it can report logins, and nothing else. Every other request
// gets 404.
func HookHandler(onLogin OnLoginFunc, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logins", func(w http.ResponseWriter, r *http.Request) {
		serveLogin(w, r, onLogin, log, time.Now(), "hook")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, errors.New("not found: the hook socket takes only POST /v1/logins"))
	})
	return mux
}
