package policy

import (
	"strconv"
	"time"

	"mailgate/internal/rules"
)

// DNSBL is what the door's DNS blocklist lookup found for an attempt's
// client (internal/dnsbl); the door fills it in before Decide, which only
// reads it. The zero value means "not asked".
type DNSBL struct {
	Checked bool   // the zones answered within the budget (or the cache did)
	Score   int    // the sum of the weights of the listing zones
	Zones   string // the listing zones, comma-separated ("" for none)
}

// DNSBLPolicy is when the DNS blocklists refuse a login.
type DNSBLPolicy struct {
	// Threshold is the score at or above which a login is refused;
	// 0 turns the check off.
	Threshold int
	// Services are the services checked, indexed by rules.Service.
	Services [rules.OtherService + 1]bool
}

// applies reports whether attempts of a's kind are checked at all.
func (p *DNSBLPolicy) applies(a *Attempt) bool {
	return p.Threshold > 0 && int(a.Service) < len(p.Services) && p.Services[a.Service] && !a.AfterAuth && a.Client.IsValid() && a.Login != ""
}

// SetDNSBL changes the DNS blocklist policy.
func (e *Engine) SetDNSBL(p DNSBLPolicy) {
	e.update(func(s *Settings) { s.DNSBL = p })
}

// NeedsDNSBL reports whether a door should look a's client up in the DNS
// blocklists before deciding it: the service is checked, the attempt
// has a login, and it is not exempt. Trusted networks, an account's own allow rules
// and known-good (login, address) pairs are never checked (not even
// asked), nor are attempts the rules or an address ban refuse anyway. It
// touches only memory.
func (e *Engine) NeedsDNSBL(a *Attempt, now time.Time) bool {
	return e.DNSBLSkip(a, now) == ""
}

// DNSBLSkip says why a's client is not looked up, "" when it is (see
// NeedsDNSBL); for explanations. The texts are constants: it does not
// allocate.
func (e *Engine) DNSBLSkip(a *Attempt, now time.Time) string {
	p := &e.set.Load().DNSBL
	switch {
	case p.Threshold <= 0:
		return "DNSBL is off"
	case a.AfterAuth:
		return "the password was already found correct (Dovecot's second call)"
	case !a.Client.IsValid():
		return "no client address"
	case a.Login == "":
		// nginx's SMTP proxy asks for mail delivered without AUTH too
		// (Auth-Method: none): blocklists here are for logins.
		return "no login: the blocklists are asked for logins only (nginx passes on mail without SMTP AUTH too)"
	case int(a.Service) >= len(p.Services) || !p.Services[a.Service]:
		return "the service is not in dnsbl.services"
	}
	v, decided := e.decideRules(a, now, nil)
	switch {
	case v.Reason == ReasonTrusted:
		return "the address is in a trusted network"
	case v.Reason == ReasonAccountAllow:
		return "the account's own allow rule lets this address in"
	case decided:
		return "the rules refuse the attempt anyway"
	}
	if e.abuse != nil {
		st := e.abuse.Check(a.Login, a.Client, e.pwHash(a), now)
		switch {
		case st.KnownGood:
			return "this address logged in to the account before (known good)"
		case st.AddrBan.Found:
			return "the address is banned anyway"
		}
	}
	return ""
}

// decideDNSBL refuses an attempt no other check settled when its DNSBL
// score reaches the threshold; pass is the verdict otherwise.
func (e *Engine) decideDNSBL(a *Attempt, tr *Trace, pass Verdict, knownGood bool) Verdict {
	p := &e.set.Load().DNSBL
	if p.Threshold <= 0 {
		return pass
	}
	switch {
	case !p.applies(a):
		if tr != nil {
			tr.add("dnsbl", "skipped", 0, "not checked for "+a.Service.String())
		}
		return pass
	case pass.Reason == ReasonAccountAllow:
		tr.add("dnsbl", "skipped", 0, "the account's own allow rule lets this address in")
		return pass
	case knownGood:
		tr.add("dnsbl", "skipped", 0, "this address logged in to the account before (known good)")
		return pass
	case !a.DNSBL.Checked:
		tr.add("dnsbl", "no answer", 0, "the zones did not answer within the budget: not listed")
		return pass
	case a.DNSBL.Score >= p.Threshold:
		if tr != nil {
			tr.add("dnsbl", "listed", 0, "score "+strconv.Itoa(a.DNSBL.Score)+" reaches the threshold "+strconv.Itoa(p.Threshold)+"; listed by "+a.DNSBL.Zones)
		}
		return Verdict{Action: Deny, Reason: ReasonDNSBL}
	}
	if tr != nil {
		d := "score " + strconv.Itoa(a.DNSBL.Score) + " is below the threshold " + strconv.Itoa(p.Threshold)
		if a.DNSBL.Zones != "" {
			d += "; listed by " + a.DNSBL.Zones
		}
		tr.add("dnsbl", "passed", 0, d)
	}
	return pass
}
