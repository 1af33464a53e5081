package replay

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a replay found. Its JSON form is stable (docs/replay.md):
// fields may be added, none renamed or removed. Times are RFC 3339 in
// UTC; maps are keyed by stable codes (verdicts, decision-log reasons,
// ban reasons).
type Report struct {
	Input Input `json:"input"`
	// Verdicts counts attempts by action: allow, deny, tarpit.
	Verdicts map[string]int64 `json:"verdicts"`
	// Reasons counts attempts by the decision log's reason code.
	Reasons        map[string]int64 `json:"reasons"`
	PasswordChecks PasswordChecks   `json:"password_checks"`
	Legitimate     Legitimate       `json:"legitimate"`
	Attackers      Attackers        `json:"attackers"`
	Bans           Bans             `json:"bans"`
	Permits        Permits          `json:"permits"`
	UnderAttack    UnderAttack      `json:"under_attack"`
}

// Input counts what was read.
type Input struct {
	Files      int       `json:"files"`
	Lines      int64     `json:"lines"`        // lines read (log lines, or events lines with comments and blank ones)
	Events     int64     `json:"events"`       // events replayed (in range)
	Attempts   int64     `json:"attempts"`     // attempts replayed: a log line may report several failed checks
	OutOfRange int64     `json:"out_of_range"` // events outside --from/--to, skipped
	OutOfOrder int64     `json:"out_of_order"` // events earlier than one before them: replayed at the later time
	First      time.Time `json:"first"`        // the first replayed event's time (zero when none)
	Last       time.Time `json:"last"`
}

// PasswordChecks splits the attempts by whether they reached the password
// check: a refused attempt never does (stopped); an allowed or tarpitted
// one does when the input has its result (reached), not when the input is
// decide-only (result ""). Postfix checks an SMTP AUTH password before it
// asks mailgate: its attempts always reach the check (a refused success
// is refused sending), and its failures are not decided at all
// (undecided, a part of reached).
type PasswordChecks struct {
	Reached    int64 `json:"reached"`
	Stopped    int64 `json:"stopped"`
	DecideOnly int64 `json:"decide_only"`
	Undecided  int64 `json:"undecided"`
}

// Legitimate is about the users' own attempts: those labelled actor
// "user", and the unlabelled ones whose password check succeeded.
type Legitimate struct {
	Attempts  int64 `json:"attempts"`
	Refused   int64 `json:"refused"`   // the key number: legitimate attempts the engine refused
	Logins    int   `json:"logins"`    // distinct logins among them
	Addresses int   `json:"addresses"` // distinct addresses among them
	// List has one entry per refused (login, address), by first refusal.
	List      []Refusal `json:"list"`
	Truncated int       `json:"truncated"` // entries left out of List
	Untracked int64     `json:"untracked"` // refusals of pairs beyond the tracking bound (not in List)
}

// Refusal is one (login, address) whose legitimate attempts were refused.
type Refusal struct {
	Login    string           `json:"login"`
	Address  netip.Addr       `json:"address"`
	Actor    string           `json:"actor"` // "user", or "" when unlabelled (a successful login)
	First    time.Time        `json:"first"`
	Last     time.Time        `json:"last"`
	Attempts int64            `json:"attempts"`
	Reasons  map[string]int64 `json:"reasons"` // by reason code
}

// Attackers is about the guesses: attempts labelled actor "attacker", and
// the unlabelled ones whose password check failed (a user's typo counts
// here too when the input has no labels).
type Attackers struct {
	Attempts      int64 `json:"attempts"`
	Stopped       int64 `json:"stopped"`   // refused before the password check
	Reached       int64 `json:"reached"`   // reached a password check
	Succeeded     int64 `json:"succeeded"` // ... and it succeeded (a labelled attacker who guessed right)
	Accounts      int   `json:"accounts"`  // accounts with at least one guess that reached a check
	MaxPerAccount int64 `json:"max_per_account"`
	// List has the accounts, most guesses reaching a check first.
	List      []Account `json:"list"`
	Truncated int       `json:"truncated"`
	Untracked int64     `json:"untracked"` // attempts on accounts beyond the tracking bound
}

// Account is the guesses on one login ("" for attempts without one).
type Account struct {
	Login     string `json:"login"`
	Reached   int64  `json:"reached"`
	Stopped   int64  `json:"stopped"`
	Succeeded int64  `json:"succeeded"`
}

// Bans are the automatic bans the replay made.
type Bans struct {
	Total     int64            `json:"total"`
	Addresses int64            `json:"addresses"`
	Logins    int64            `json:"logins"`
	ByReason  map[string]int64 `json:"by_reason"`
	List      []BanEntry       `json:"list"` // in the order made
	Truncated int64            `json:"truncated"`
}

// BanEntry is one ban: when it was made, what, why and how long.
type BanEntry struct {
	Time    time.Time  `json:"time"`
	ID      int64      `json:"id"`
	Kind    string     `json:"kind"`   // "address" or "login"
	Target  string     `json:"target"` // the address or network, or the login
	Reason  string     `json:"reason"` // login_attack, addr_failures, spray, addr_hour, ...
	Seconds int64      `json:"seconds"`
	Length  string     `json:"length"` // Go duration: 10m0s
	Until   *time.Time `json:"until"`
}

// Permits are the relay permits the replay's logins granted (none when
// [relay] is off).
type Permits struct {
	Enabled       bool          `json:"enabled"` // [relay] enabled
	Granted       int64         `json:"granted"`
	Refreshed     int64         `json:"refreshed"`
	SharedRefused int64         `json:"shared_refused"`
	NeverNetwork  int64         `json:"never_network"`
	List          []PermitEntry `json:"list"` // the granted ones, in order
	Truncated     int64         `json:"truncated"`
}

// PermitEntry is one granted permit.
type PermitEntry struct {
	Time    time.Time `json:"time"`
	Network string    `json:"network"`
	Login   string    `json:"login"`
	Service string    `json:"service"`
	Until   time.Time `json:"until"`
}

// UnderAttack lists the periods the server was "under attack"
// ([bruteforce] under_attack).
type UnderAttack struct {
	Total int64     `json:"total"`
	List  []*Period `json:"list"`
}

// Period is one "under attack" period; End is null while it lasted to the
// end of the input.
type Period struct {
	Start    time.Time  `json:"start"`
	End      *time.Time `json:"end"`
	Failures int        `json:"failures_10m"` // failures in the 10 minutes that started it
	Usual    float64    `json:"usual_10m"`
}

// textRows is how many rows each table of the text report shows.
const textRows = 20

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	in := &r.Input
	if in.Events == 0 {
		fmt.Fprintf(b, "replay: no events (%d lines read, %d out of range)\n", in.Lines, in.OutOfRange)
	} else {
		fmt.Fprintf(b, "replay: %d attempts in %d events, %s to %s (%s)\n", in.Attempts, in.Events,
			stamp(in.First), stamp(in.Last), in.Last.Sub(in.First).Round(time.Second))
	}
	if in.OutOfRange > 0 || in.OutOfOrder > 0 {
		fmt.Fprintf(b, "  skipped %d events outside --from/--to; %d events out of time order (replayed at the time before them)\n", in.OutOfRange, in.OutOfOrder)
	}
	fmt.Fprintf(b, "verdicts: allow %d, deny %d, tarpit %d\n", r.Verdicts["allow"], r.Verdicts["deny"], r.Verdicts["tarpit"])
	if len(r.Reasons) > 0 {
		b.WriteString("  by reason: " + counts(r.Reasons) + "\n")
	}
	pc := &r.PasswordChecks
	fmt.Fprintf(b, "password checks: %d reached, %d stopped before the check", pc.Reached, pc.Stopped)
	if pc.DecideOnly > 0 {
		fmt.Fprintf(b, ", %d decide-only (no result given)", pc.DecideOnly)
	}
	if pc.Undecided > 0 {
		fmt.Fprintf(b, "; %d of those reached are Postfix SASL failures, which Postfix checks before asking mailgate", pc.Undecided)
	}
	b.WriteString("\n\n")

	lg := &r.Legitimate
	fmt.Fprintf(b, "legitimate users refused: %d of %d attempts (%s, %s)\n", lg.Refused, lg.Attempts, plural(lg.Logins, "login"), plural(lg.Addresses, "address"))
	if len(lg.List) > 0 {
		tw := tabwriter.NewWriter(b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  LOGIN\tADDRESS\tFIRST\tLAST\tATTEMPTS\tREASONS")
		for _, f := range lg.List[:min(len(lg.List), textRows)] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", show(f.Login), f.Address, stamp(f.First), stamp(f.Last), f.Attempts, counts(f.Reasons))
		}
		tw.Flush()
		more(b, len(lg.List)-textRows+lg.Truncated)
	}
	b.WriteString("\n")

	at := &r.Attackers
	fmt.Fprintf(b, "attacker guesses: %d attempts, %d stopped before the password check, %d reached it", at.Attempts, at.Stopped, at.Reached)
	if at.Succeeded > 0 {
		fmt.Fprintf(b, " (%d succeeded)", at.Succeeded)
	}
	b.WriteString("\n")
	if at.Accounts > 0 {
		fmt.Fprintf(b, "  reaching the password check per account: %s, at most %d on one\n", plural(at.Accounts, "account"), at.MaxPerAccount)
		tw := tabwriter.NewWriter(b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  ACCOUNT\tREACHED\tSTOPPED\tSUCCEEDED")
		for _, c := range at.List[:min(len(at.List), textRows)] {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", show(c.Login), c.Reached, c.Stopped, c.Succeeded)
		}
		tw.Flush()
		more(b, len(at.List)-textRows+at.Truncated)
	}
	b.WriteString("\n")

	bs := &r.Bans
	fmt.Fprintf(b, "bans made: %d (%d addresses, %d logins)", bs.Total, bs.Addresses, bs.Logins)
	if len(bs.ByReason) > 0 {
		b.WriteString(": " + counts(bs.ByReason))
	}
	b.WriteString("\n")
	if len(bs.List) > 0 {
		tw := tabwriter.NewWriter(b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tKIND\tTARGET\tREASON\tLENGTH")
		for _, e := range bs.List[:min(len(bs.List), textRows)] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", stamp(e.Time), e.Kind, show(e.Target), e.Reason, dash(e.Length))
		}
		tw.Flush()
		more(b, len(bs.List)-textRows+int(bs.Truncated))
	}
	b.WriteString("\n")

	ps := &r.Permits
	if !ps.Enabled {
		b.WriteString("relay permits: off ([relay] enabled = false)\n")
	} else {
		fmt.Fprintf(b, "relay permits: %d granted, %d refreshed", ps.Granted, ps.Refreshed)
	}
	if ps.Enabled {
		if ps.SharedRefused > 0 {
			fmt.Fprintf(b, ", %d refused (shared network)", ps.SharedRefused)
		}
		b.WriteString("\n")
	}
	if len(ps.List) > 0 {
		tw := tabwriter.NewWriter(b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tNETWORK\tLOGIN\tSERVICE")
		for _, p := range ps.List[:min(len(ps.List), textRows)] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", stamp(p.Time), p.Network, show(p.Login), p.Service)
		}
		tw.Flush()
		more(b, len(ps.List)-textRows+int(ps.Truncated))
	}
	if ua := &r.UnderAttack; ua.Total > 0 {
		fmt.Fprintf(b, "\nunder attack: %s\n", plural(int(ua.Total), "period"))
		for _, p := range ua.List[:min(len(ua.List), textRows)] {
			end := "the end of the input"
			if p.End != nil {
				end = stamp(*p.End)
			}
			fmt.Fprintf(b, "  %s to %s (%d failures in 10 minutes; usually %.1f)\n", stamp(p.Start), end, p.Failures, p.Usual)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "s") {
		return strconv.Itoa(n) + " " + word + "es"
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func more(b *strings.Builder, n int) {
	if n > 0 {
		fmt.Fprintf(b, "  ... and %d more (--json lists them)\n", n)
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// show quotes a login or target that is empty or holds characters a
// terminal would act on.
func show(s string) string {
	if s == "" {
		return "(none)"
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == ' ' || c == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}

// counts renders a map of counts, largest first.
func counts(m map[string]int64) string {
	type kv struct {
		k string
		n int64
	}
	var l []kv
	for k, n := range m {
		l = append(l, kv{k, n})
	}
	slices.SortFunc(l, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.k, b.k)) })
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.k + " " + strconv.FormatInt(e.n, 10)
	}
	return strings.Join(parts, ", ")
}
