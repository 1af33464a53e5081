package console

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/rules"
)

var errNoLog = errors.New("the decision log cannot be read here: log.decisions is off, or stdout/stderr without console.journal_unit (docs/console.md)")

type overviewData struct {
	Status   api.StatusJSON
	Charts   []chart
	ChartErr string
	Bans     []api.BanJSON
	NBans    int
	Permits  []api.PermitJSON
	NPermits int
	Refusals []Entry
	Attack   api.AttackJSON
}

func (s *Server) overview(q *req) {
	var d overviewData
	var errs []error
	var err error
	d.Status, err = s.api.Status(q.ctx)
	errs = append(errs, err)
	d.Attack, _ = s.api.Attack(q.ctx)
	bans, err := s.api.Bans(q.ctx)
	errs = append(errs, err)
	d.NBans, d.Bans = len(bans), bans[:min(len(bans), 10)]
	if d.Status.Permits != nil {
		ps, err := s.api.Permits(q.ctx)
		errs = append(errs, err)
		d.NPermits, d.Permits = len(ps), ps[:min(len(ps), 10)]
	}
	if src := s.cfg.DecisionLog(); src.Off() {
		d.ChartErr = errNoLog.Error()
	} else {
		if d.Charts, err = perMinute(q.r.Context(), src, s.now()); err != nil {
			d.ChartErr = err.Error()
		}
		p, err := Search(q.r.Context(), src, Query{Reason: "refused", Limit: 10})
		if err == nil {
			d.Refusals = p.Entries
		}
	}
	s.render(q, "overview", "Overview", d, errs...)
}

type bansData struct {
	Bans []api.BanJSON
	IP   string
}

func (s *Server) bans(q *req) {
	bans, err := s.api.Bans(q.ctx)
	s.render(q, "bans", "Bans", bansData{Bans: bans, IP: q.r.URL.Query().Get("ip")}, err)
}

func (s *Server) addBan(q *req) {
	f := q.r.PostForm
	b := api.BanRequest{IP: strings.TrimSpace(f.Get("ip")), Account: strings.TrimSpace(f.Get("account")),
		For: strings.TrimSpace(f.Get("for")), Comment: f.Get("comment")}
	if (b.IP == "") == (b.Account == "") {
		s.done(q, back(q.r, Prefix+"bans"), "", errors.New("give an address (or network) or an account, not both"))
		return
	}
	got, err := s.api.AddBan(q.ctx, b)
	s.done(q, back(q.r, Prefix+"bans"), fmt.Sprintf("Ban %d added.", got.ID), err)
}

func (s *Server) liftBan(q *req) {
	id, err := strconv.ParseInt(q.r.PostForm.Get("id"), 10, 64)
	if err != nil || id <= 0 {
		s.done(q, back(q.r, Prefix+"bans"), "", errors.New("no ban id"))
		return
	}
	_, err = s.api.RemoveBan(q.ctx, id)
	s.done(q, back(q.r, Prefix+"bans"), fmt.Sprintf("Ban %d lifted.", id), err)
}

type rulesData struct {
	Account  string
	Rules    []api.RuleJSON
	Explain  *api.ExplainResponse
	ExAcct   string
	ExIP     string
	ExSvc    string
	Services []string
}

var explainServices = []string{"imap", "pop3", "smtp", "submission", "sieve"}

func (s *Server) rules(q *req) {
	v := q.r.URL.Query()
	d := rulesData{Account: strings.TrimSpace(v.Get("account")), ExAcct: v.Get("ex_account"), ExIP: v.Get("ex_ip"), ExSvc: v.Get("ex_service"), Services: explainServices}
	var errs []error
	var err error
	d.Rules, err = s.api.Rules(q.ctx, d.Account)
	errs = append(errs, err)
	if d.ExAcct != "" || d.ExIP != "" {
		ex, err := s.api.Explain(q.ctx, api.ExplainRequest{Account: d.ExAcct, IP: strings.TrimSpace(d.ExIP), Service: d.ExSvc})
		errs = append(errs, err)
		if err == nil {
			d.Explain = &ex
		}
	}
	s.render(q, "rules", "Rules and explain", d, errs...)
}

func (s *Server) addRule(q *req) {
	f := q.r.PostForm
	acct := strings.TrimSpace(f.Get("account"))
	r := api.RuleJSON{Scope: "account", Account: acct, Service: f.Get("service"), Action: f.Get("action"),
		Match: strings.TrimSpace(f.Get("match")), Comment: f.Get("comment")}
	if acct == "" {
		r.Scope = "global"
	}
	if e := strings.TrimSpace(f.Get("expires")); e != "" {
		d, err := parseFor(e)
		if err != nil {
			s.done(q, back(q.r, Prefix+"rules"), "", fmt.Errorf("expires: %w", err))
			return
		}
		t := s.now().Add(d).UTC()
		r.Expires = &t
	}
	got, err := s.api.AddRule(q.ctx, r)
	s.done(q, back(q.r, Prefix+"rules"), fmt.Sprintf("Rule %d added.", got.ID), err)
}

// parseFor reads a duration: Go's (90m, 12h) or days (7d).
func parseFor(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseFloat(n, 64)
		if err != nil || d <= 0 || d > 3650 {
			return 0, fmt.Errorf("%q is not a number of days from 0 to 3650", clip(s))
		}
		return time.Duration(d * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 90m, 12h or 7d", clip(s))
	}
	return d, nil
}

func (s *Server) removeRule(q *req) {
	id, err := strconv.ParseInt(q.r.PostForm.Get("id"), 10, 64)
	if err != nil || id <= 0 {
		s.done(q, back(q.r, Prefix+"rules"), "", errors.New("no rule id"))
		return
	}
	_, err = s.api.RemoveRule(q.ctx, id)
	s.done(q, back(q.r, Prefix+"rules"), fmt.Sprintf("Rule %d removed.", id), err)
}

type accountData struct {
	Login     string
	Rules     []api.RuleJSON
	Bans      []api.BanJSON
	KnownGood []api.KnownGoodJSON
	Usage     *api.UsageJSON
	Entries   []Entry
	LogErr    string
	Back      string
}

func (s *Server) account(q *req) {
	login := rules.NormalizeLogin(q.r.URL.Query().Get("login"))
	d := accountData{Login: login, Back: accountLink(login)}
	if login == "" {
		s.render(q, "account", "Account", d)
		return
	}
	var errs []error
	rs, err := s.api.Rules(q.ctx, login)
	errs = append(errs, err)
	for _, r := range rs {
		if r.Account == login {
			d.Rules = append(d.Rules, r)
		}
	}
	bans, err := s.api.Bans(q.ctx)
	errs = append(errs, err)
	for _, b := range bans {
		if b.Account == login {
			d.Bans = append(d.Bans, b)
		}
	}
	d.KnownGood, err = s.api.KnownGood(q.ctx, login)
	errs = append(errs, err)
	if us, err := s.api.Limits(q.ctx); err == nil {
		for i := range us {
			if us[i].Login == login {
				d.Usage = &us[i]
			}
		}
	}
	if src := s.cfg.DecisionLog(); src.Off() {
		d.LogErr = errNoLog.Error()
	} else if p, err := Search(q.r.Context(), src, Query{Login: login, Limit: 50}); err != nil {
		d.LogErr = err.Error()
	} else {
		d.Entries = p.Entries
	}
	s.render(q, "account", "Account "+login, d, errs...)
}

type permitsData struct {
	Permits []api.PermitJSON
}

func (s *Server) permits(q *req) {
	ps, err := s.api.Permits(q.ctx)
	s.render(q, "permits", "Relay permits", permitsData{Permits: ps}, err)
}

func (s *Server) addPermit(q *req) {
	f := q.r.PostForm
	p, err := s.api.AddPermit(q.ctx, api.PermitRequest{IP: strings.TrimSpace(f.Get("ip")), For: strings.TrimSpace(f.Get("for")), Comment: f.Get("comment")})
	s.done(q, back(q.r, Prefix+"permits"), "Permit for "+p.IP+" added.", err)
}

func (s *Server) removePermit(q *req) {
	ip := strings.TrimSpace(q.r.PostForm.Get("ip"))
	_, err := s.api.RemovePermit(q.ctx, ip)
	s.done(q, back(q.r, Prefix+"permits"), "Permit for "+ip+" removed.", err)
}

type logData struct {
	Login, IP, Reason, From, To string
	Page                        Page
	Searched                    bool
	More                        string // the URL of the next (older) page
	Reasons                     []string
}

var logReasons = []string{"refused", "default", "trusted", "global_deny", "account_allow", "account_deny", "not_in_allowlist",
	"service_closed", "bad_address", "bad_login", "banned_address", "banned_login", "under_attack", "stale_password",
	"country_blocked", "relay_permit", "dnsbl", "weak_password", "send_limit"}

// decisionLog searches the decision log: GET with login, ip (address or
// CIDR), reason, from and to (2006-01-02 15:04 or RFC 3339, UTC), before
// (the offset where the previous page stopped).
func (s *Server) decisionLog(q *req) {
	v := q.r.URL.Query()
	d := logData{Login: v.Get("login"), IP: v.Get("ip"), Reason: v.Get("reason"), From: v.Get("from"), To: v.Get("to"), Reasons: logReasons}
	src := s.cfg.DecisionLog()
	if src.Off() {
		s.render(q, "log", "Decision log", d, errNoLog)
		return
	}
	query := Query{Login: rules.NormalizeLogin(d.Login), Reason: strings.TrimSpace(d.Reason), Limit: 100}
	var err error
	for _, f := range []string{d.Login, d.IP, d.Reason, d.From, d.To} {
		if len(f) > maxQueryField {
			s.render(q, "log", "Decision log", d, fmt.Errorf("a search field is longer than %d bytes", maxQueryField))
			return
		}
	}
	if ip := strings.TrimSpace(d.IP); ip != "" {
		if query.Prefix, err = parsePrefix(ip); err != nil {
			s.render(q, "log", "Decision log", d, err)
			return
		}
	}
	if query.From, err = parseWhen(d.From); err != nil {
		s.render(q, "log", "Decision log", d, fmt.Errorf("from: %w", err))
		return
	}
	if query.To, err = parseWhen(d.To); err != nil {
		s.render(q, "log", "Decision log", d, fmt.Errorf("to: %w", err))
		return
	}
	if query.Before = v.Get("before"); len(query.Before) > 512 {
		s.render(q, "log", "Decision log", d, errors.New("before: too long"))
		return
	}
	d.Searched = true
	d.Page, err = Search(q.r.Context(), src, query)
	if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("the decision log %s does not exist yet", src.File)
	}
	if d.Page.Next != "" {
		nv := q.r.URL.Query()
		nv.Set("before", d.Page.Next)
		d.More = Prefix + "log?" + nv.Encode()
	}
	s.render(q, "log", "Decision log", d, err)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("ip: %q is not an address or network", clip(s))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip: %q is not an address or network", clip(s))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseWhen(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time such as 2026-12-01 08:00 (UTC) or RFC 3339", clip(s))
}

// sortedDoors lists the chart's doors in a fixed order.
func sortedDoors(m map[string]*chart) []chart {
	out := make([]chart, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, *m[k])
	}
	slices.SortStableFunc(out, func(a, b chart) int { return strings.Compare(a.Door, b.Door) })
	return out
}
