// Package api is mailgate's admin API: HTTP+JSON on a unix socket (and
// optionally TCP with a bearer token), used by the CLI and later the web
// UI. It also keeps the in-memory rule index and the store in step: a rule
// change reaches disk first, then memory, under one lock.
//
// It is not a door: mail programs never talk to it.
package api

import (
	"fmt"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// RuleJSON is a rule on the wire and in `--json` listings.
type RuleJSON struct {
	ID        int64      `json:"id"`
	Scope     string     `json:"scope"`
	Account   string     `json:"account,omitempty"`
	Service   string     `json:"service"`
	Action    string     `json:"action"`
	Match     string     `json:"match"`
	Comment   string     `json:"comment"`
	Expires   *time.Time `json:"expires"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"created_by"`
	Source    string     `json:"source,omitempty"`
}

// FromRule converts a rule for the wire.
func FromRule(r *rules.Rule) RuleJSON {
	j := RuleJSON{
		ID: r.ID, Scope: r.Scope.String(), Account: r.Account, Service: r.Service.String(),
		Action: r.Action.String(), Match: r.MatchString(), Comment: r.Comment,
		Created: r.Created.UTC(), CreatedBy: r.CreatedBy, Source: r.Source,
	}
	if !r.Expires.IsZero() {
		e := r.Expires.UTC()
		j.Expires = &e
	}
	return j
}

// Rule parses and validates a wire rule. Errors name the field.
func (j *RuleJSON) Rule() (rules.Rule, error) {
	var r rules.Rule
	switch j.Scope {
	case "", "account":
		r.Scope = rules.ScopeAccount
	case "global":
		r.Scope = rules.ScopeGlobal
	default:
		return r, fmt.Errorf("scope: %q is neither account nor global", j.Scope)
	}
	r.Account = j.Account
	var err error
	if r.Service, err = rules.ParseService(j.Service); err != nil {
		return r, fmt.Errorf("service: %w", err)
	}
	if r.Action, err = rules.ParseAction(j.Action); err != nil {
		return r, fmt.Errorf("action: %w", err)
	}
	if err = r.SetMatch(j.Match); err != nil {
		return r, fmt.Errorf("match: %w", err)
	}
	r.Comment = j.Comment
	if j.Expires != nil {
		r.Expires = *j.Expires
	}
	return r, r.Validate()
}

// ExplainRequest asks for the verdict on a hypothetical attempt.
type ExplainRequest struct {
	Account string `json:"account"`
	IP      string `json:"ip"`
	Service string `json:"service"`
	// PwHash optionally names the password hash tried (Dovecot's pwhash),
	// to ask whether that client counts as stale.
	PwHash string `json:"pwhash,omitempty"`
}

// ExplainResponse is the verdict and every check that led to it.
type ExplainResponse struct {
	Verdict    string    `json:"verdict"`
	Reason     string    `json:"reason"`
	Rule       int64     `json:"rule"`
	RuleDetail *RuleJSON `json:"rule_detail,omitempty"`
	Ban        int64     `json:"ban,omitempty"`
	BanDetail  *BanJSON  `json:"ban_detail,omitempty"`
	Delay      string    `json:"delay,omitempty"`
	// DelaySeconds is Delay in seconds (fractions kept: a tarpit may be 1.5 s).
	DelaySeconds float64         `json:"delay_seconds,omitempty"`
	Counters     *abuse.Counters `json:"counters,omitempty"`
	Message      string          `json:"message"`
	Explanation  string          `json:"explanation"`
	Account      string          `json:"account"`
	IP           string          `json:"ip"`
	Service      string          `json:"service"`
	Country      string          `json:"country,omitempty"`
	DNSBL        *DNSBLJSON      `json:"dnsbl,omitempty"`
	Checks       []policy.Check  `json:"checks"`
}

// DNSBLJSON is the DNS blocklists' answer behind a verdict (explain) or
// asked now ('mailgate dnsbl check').
type DNSBLJSON struct {
	IP string `json:"ip"`
	// Asked is false when the attempt is not looked up (a trusted
	// network, the account's allow rule, a known-good address, a ban,
	// or a service not checked): Note says so.
	Asked     bool            `json:"asked"`
	Note      string          `json:"note,omitempty"`
	Answered  bool            `json:"answered"` // within the budget
	Score     int             `json:"score"`
	Threshold int             `json:"threshold,omitempty"`
	Listed    []string        `json:"listed"`
	Zones     []DNSBLZoneJSON `json:"zones"`
}

// DNSBLZoneJSON is one zone's answer.
type DNSBLZoneJSON struct {
	Zone   string   `json:"zone"`
	Weight int      `json:"weight"`
	Result string   `json:"result"` // listed, not listed, error
	Codes  []string `json:"codes,omitempty"`
	TTL    int64    `json:"ttl,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// AuditJSON is one audit trail entry.
type AuditJSON struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Op     string    `json:"op"`
	Object string    `json:"object"` // "rule" or "ban"
	RuleID int64     `json:"rule,omitempty"`
	BanID  int64     `json:"ban,omitempty"`
	Detail string    `json:"detail"`
}

// ErrorJSON is the body of every error reply.
type ErrorJSON struct {
	Error string `json:"error"`
}

// VersionJSON answers /v1/version.
type VersionJSON struct {
	Version string `json:"version"`
	Rules   int    `json:"rules"`
}
