package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
)

// fakeGeo maps networks to countries like a GeoIP database would, and
// classifies the rest like internal/geoip does.
func fakeGeo(nets map[string]string) CountryLookup {
	type entry struct {
		p  netip.Prefix
		cc string
	}
	var es []entry
	for p, cc := range nets {
		es = append(es, entry{netip.MustParsePrefix(p), cc})
	}
	return func(a netip.Addr) (string, CountryKind) {
		for _, e := range es {
			if e.p.Contains(a) {
				return e.cc, CountryFound
			}
		}
		if a.IsPrivate() || a.IsLoopback() {
			return "", CountryPrivate
		}
		return "", CountryUnknown
	}
}

var testNets = map[string]string{
	"198.51.100.0/24": "IN",
	"203.0.113.0/25":  "US",
	"192.0.2.0/24":    "CN",
	"100.64.1.0/24":   "DE",
	"100.64.2.0/24":   "FR",
}

// The seed (002): logins only from IN and US, plus per-user extra
// countries and addresses ("user|CC", "user|IP").
func TestCountryRules(t *testing.T) {
	e := engine(t,
		"alice@example.com all extra country:FR",  // 1: the seed's alice|FR
		"alice@example.com all extra 192.0.2.9",   // 2: the seed's alice|192.0.2.9
		"carol@example.com all allow country:DE",  // 3: only from Germany
		"dave@example.com imap allow 192.0.2.50",  // 4: an address allow beats the country block
		"erin@example.com all deny country:IN",    // 5
		"@corp.example all extra country:de,fr",   // 6: a domain's extra countries
		"global all allow 192.0.2.128/25",         // 7: a trusted network in CN
		"frank@example.com smtp extra country:CN", // 8: only for sending
		"gina@example.com all allow 192.0.2.60",   // 9
		"gina@example.com all allow country:DE",   // 10
	).WithCountries(fakeGeo(testNets), CountryPolicy{Allow: "IN,US", Private: CountryPass})
	check(t, e, []want{
		{"bob@example.com", "imap", "198.51.100.7", Allow, ReasonDefault, 0},
		{"bob@example.com", "imap", "203.0.113.7", Allow, ReasonDefault, 0},
		{"bob@example.com", "imap", "192.0.2.7", Deny, ReasonCountryBlocked, 0},
		{"bob@example.com", "pop3", "100.64.2.1", Deny, ReasonCountryBlocked, 0},
		{"bob@example.com", "imap", "203.0.113.200", Deny, ReasonCountryBlocked, 0}, // unknown: as listed
		{"bob@example.com", "imap", "10.1.2.3", Allow, ReasonDefault, 0},            // private: allow
		{"bob@example.com", "imap", "192.0.2.200", Allow, ReasonTrusted, 7},
		{"", "smtp", "192.0.2.7", Allow, ReasonDefault, 0}, // no login: country rules are for logins
		{"alice@example.com", "imap", "100.64.2.1", Allow, ReasonDefault, 0},
		{"alice@example.com", "imap", "192.0.2.9", Allow, ReasonDefault, 0},
		{"alice@example.com", "imap", "192.0.2.10", Deny, ReasonCountryBlocked, 0},
		{"alice@example.com", "imap", "198.51.100.7", Allow, ReasonDefault, 0}, // extras do not restrict
		{"carol@example.com", "imap", "100.64.1.1", Allow, ReasonAccountAllow, 3},
		{"carol@example.com", "imap", "198.51.100.7", Deny, ReasonNotInAllowlist, 0},
		{"carol@example.com", "imap", "203.0.113.200", Deny, ReasonNotInAllowlist, 0},
		{"dave@example.com", "imap", "192.0.2.50", Allow, ReasonAccountAllow, 4},
		{"dave@example.com", "imap", "198.51.100.7", Deny, ReasonNotInAllowlist, 0},
		{"dave@example.com", "pop3", "198.51.100.7", Allow, ReasonDefault, 0},
		{"erin@example.com", "imap", "198.51.100.7", Deny, ReasonAccountDeny, 5},
		{"erin@example.com", "imap", "203.0.113.7", Allow, ReasonDefault, 0},
		{"x@corp.example", "imap", "100.64.1.1", Allow, ReasonDefault, 0},
		{"x@corp.example", "imap", "192.0.2.7", Deny, ReasonCountryBlocked, 0},
		{"frank@example.com", "submission", "192.0.2.7", Allow, ReasonDefault, 0},
		{"frank@example.com", "imap", "192.0.2.7", Deny, ReasonCountryBlocked, 0},
		{"gina@example.com", "imap", "192.0.2.60", Allow, ReasonAccountAllow, 9},
		{"gina@example.com", "imap", "100.64.1.9", Allow, ReasonAccountAllow, 10},
		{"gina@example.com", "imap", "192.0.2.61", Deny, ReasonNotInAllowlist, 0},
	})
}

func TestCountryOutcomesAndDenyList(t *testing.T) {
	geo := fakeGeo(testNets)
	e := engine(t).WithCountries(geo, CountryPolicy{Deny: "CN", Private: CountryBlock})
	check(t, e, []want{
		{"bob@example.com", "imap", "192.0.2.7", Deny, ReasonCountryBlocked, 0},
		{"bob@example.com", "imap", "100.64.1.1", Allow, ReasonDefault, 0},
		{"bob@example.com", "imap", "203.0.113.200", Allow, ReasonDefault, 0}, // unknown, as listed: on no deny list
		{"bob@example.com", "imap", "10.1.2.3", Deny, ReasonCountryBlocked, 0},
	})
	e = engine(t).WithCountries(geo, CountryPolicy{Unknown: CountryBlock})
	check(t, e, []want{
		{"bob@example.com", "imap", "203.0.113.200", Deny, ReasonCountryBlocked, 0},
		{"bob@example.com", "imap", "192.0.2.7", Allow, ReasonDefault, 0},
		{"bob@example.com", "imap", "10.1.2.3", Allow, ReasonDefault, 0},
	})
	// A lookup without a global list only labels the attempt.
	e = engine(t).WithCountries(geo, CountryPolicy{})
	a := attempt("bob@example.com", "imap", "192.0.2.7")
	if v := e.Decide(a, now, nil); v.Action != Allow || a.Country != "CN" {
		t.Errorf("no list: got %v, country %q", v.Action, a.Country)
	}
	for ip, want := range map[string]string{"10.0.0.1": "private", "203.0.113.200": "unknown", "100.64.2.5": "FR"} {
		a := attempt("bob@example.com", "imap", ip)
		e.Decide(a, now, nil)
		if a.Country != want {
			t.Errorf("%s: country %q, want %q", ip, a.Country, want)
		}
	}
}

// An allow by country is not an explicit allow: the login is still
// counted and can be banned. An allow by address is never counted.
func TestCountryAllowDoesNotBypassBans(t *testing.T) {
	e, _ := engineWithAbuse(t,
		"carol@example.com all allow country:DE",
		"carol@example.com all allow 192.0.2.60",
	)
	e.WithCountries(fakeGeo(testNets), CountryPolicy{Allow: "DE"})
	at := now
	var bans []abuse.Ban
	for i, ip := range []string{"100.64.1.1", "100.64.1.2", "100.64.1.3"} {
		bans = append(bans, fail(e, "carol@example.com", ip, "0abc"[:3]+string(rune('0'+i)), at)...)
	}
	if len(bans) == 0 {
		t.Fatal("failures from an allowed country were not counted")
	}
	check(t, e, []want{
		{"carol@example.com", "imap", "100.64.1.9", Deny, ReasonBannedLogin, 0},
		{"carol@example.com", "imap", "192.0.2.60", Allow, ReasonAccountAllow, 2},
	})
	if b := fail(e, "carol@example.com", "192.0.2.60", "0fff", at); b != nil {
		t.Errorf("a failure from the account's own address made bans %v", b)
	}
}

func TestCountryInLogAndExplain(t *testing.T) {
	e := engine(t, "alice@example.com all extra country:FR").
		WithCountries(fakeGeo(testNets), CountryPolicy{Allow: "IN,US"})
	a := attempt("bob@example.com", "imap", "192.0.2.7")
	tr := &Trace{}
	v := e.Decide(a, now, tr)
	line := string(AppendVerdict(nil, now, a, &v))
	for _, w := range []string{" decision=deny reason=country_blocked rule=config ", " ip=192.0.2.7 country=CN"} {
		if !strings.Contains(line, w) {
			t.Errorf("decision line %q lacks %q", line, w)
		}
	}
	if got := e.Message(a, &v); got != "Logins to this account are not allowed from your country (CN)." {
		t.Errorf("message %q", got)
	}
	if got := v.Explain(a); !strings.Contains(got, "country CN") {
		t.Errorf("explanation %q", got)
	}
	var names []string
	for _, c := range tr.Checks {
		names = append(names, c.Name+"="+c.Result)
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "country=CN") || !strings.Contains(got, "global country list=blocked") {
		t.Errorf("trace %s", got)
	}
	a = attempt("alice@example.com", "imap", "100.64.2.1")
	tr = &Trace{}
	e.Decide(a, now, tr)
	last := tr.Checks[len(tr.Checks)-1]
	if last.Result != "exception" || last.RuleID != 1 || !strings.Contains(last.Detail, "country FR") {
		t.Errorf("exception check %+v", last)
	}
}

func TestDecideWithCountriesDoesNotAllocate(t *testing.T) {
	e, _ := engineWithAbuse(t, "alice@example.com all extra country:FR", "carol@example.com all allow country:DE")
	e.WithCountries(fakeGeo(testNets), CountryPolicy{Allow: "IN,US"})
	as := []*Attempt{
		attempt("alice@example.com", "imap", "100.64.2.1"),
		attempt("bob@example.com", "imap", "192.0.2.7"),
		attempt("carol@example.com", "imap", "100.64.1.1"),
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, a := range as {
			a.Country = ""
			e.Decide(a, now.Add(time.Second), nil)
		}
	})
	if allocs != 0 {
		t.Errorf("Decide with countries allocates %.1f times", allocs)
	}
}
