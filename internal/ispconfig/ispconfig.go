// Package ispconfig reads the per-account IP restrictions of an ISPConfig 3
// server — the `mail_user_ip_restriction` table of the well-known howto,
// joined with `mail_user.email` — and turns them into mailgate rules.
//
// The rows come from a tab- or comma-separated export (ReadCSV), a
// mysqldump file (ReadSQLDump) or a live MySQL/MariaDB server (ReadMySQL).
// The table and its meaning:
//
//	CREATE TABLE mail_user_ip_restriction (
//	  restriction_id INT(11) UNSIGNED NOT NULL auto_increment,
//	  mailuser_id INT(11) UNSIGNED NOT NULL DEFAULT '0',  -- mail_user.mailuser_id
//	  ip VARCHAR(50) NOT NULL DEFAULT '',                 -- an address, or 'none'
//	  mode ENUM('w','b') NOT NULL DEFAULT 'w',            -- w: allow only, b: block
//	  service VARCHAR(10) NOT NULL DEFAULT '',            -- '' (all), pop3, imap, smtp
//	  ...)
//
// which maps one to one onto an account rule: mode w is allow, b is deny,
// ” is every service, `none` with w closes the service. The account is
// the mail user's email address (ISPConfig's Dovecot queries accept
// `login` too; a CSV may give a `login` column instead of `email`).
//
// It only reads and converts: storing the rules is the caller's business
// (see `mailgate import ispconfig`). Every reader bounds its input (see the
// Max constants) and reports problems with their line, never panics.
package ispconfig

import (
	"errors"
	"fmt"
	"strings"

	"mailgate/internal/rules"
)

// Size limits of the readers.
const (
	// MaxInputBytes bounds a CSV file or an SQL dump.
	MaxInputBytes = 256 << 20
	// MaxLineBytes bounds one line of a CSV/TSV file.
	MaxLineBytes = 64 << 10
	// MaxValueBytes bounds one string or number in an SQL dump (a
	// mysqldump INSERT line itself may be megabytes long and is never held
	// in memory).
	MaxValueBytes = 1 << 20
	// MaxRows bounds the number of restriction rows one import may return.
	MaxRows = 2_000_000
	// maxErrors is how many problems one error lists before "... and N more".
	maxErrors = 20
)

// Row is one restriction, already joined with its mail user.
type Row struct {
	Email   string // mail_user.email: the login the rule is for
	IP      string // an IPv4/IPv6 address, a CIDR, or "none"
	Mode    string // "w" (allow only these) or "b" (block)
	Service string // "" (all services), "pop3", "imap", "smtp"
	// RestrictionID is mail_user_ip_restriction.restriction_id; 0 when the
	// input did not give it.
	RestrictionID int64
	// Line is where the row is in its input file (1-based); 0 when it came
	// from a server.
	Line int
}

// where names the row in errors: its line and/or its restriction id.
func (r Row) where() string {
	switch {
	case r.Line > 0 && r.RestrictionID > 0:
		return fmt.Sprintf("line %d (restriction_id %d)", r.Line, r.RestrictionID)
	case r.Line > 0:
		return fmt.Sprintf("line %d", r.Line)
	case r.RestrictionID > 0:
		return fmt.Sprintf("restriction_id %d", r.RestrictionID)
	}
	return "row"
}

// ToRule converts a row into an account rule, validated. Its comment says
// where the rule came from: "imported from ISPConfig (restriction_id N)".
// Errors name the row's line or id and the field.
func ToRule(row Row) (rules.Rule, error) {
	r := rules.Rule{Scope: rules.ScopeAccount, Account: row.Email}
	var err error
	if r.Service, err = rules.ParseService(row.Service); err != nil {
		return rules.Rule{}, fmt.Errorf("%s: service: %w", row.where(), err)
	}
	switch strings.ToLower(strings.TrimSpace(row.Mode)) {
	case "w":
		r.Action = rules.Allow
	case "b":
		r.Action = rules.Deny
	default:
		return rules.Rule{}, fmt.Errorf("%s: mode: %q is neither w (allow) nor b (block)", row.where(), row.Mode)
	}
	if r.Match, err = rules.ParseMatch(row.IP); err != nil {
		return rules.Rule{}, fmt.Errorf("%s: ip: %w", row.where(), err)
	}
	if r.Action == rules.Deny && r.None() {
		// ISPConfig compares ip = client address: such a row blocks nothing.
		return rules.Rule{}, fmt.Errorf("%s: ip none with mode b blocks nothing in ISPConfig and is not a valid rule; drop the row", row.where())
	}
	r.Comment = importedComment
	if row.RestrictionID > 0 {
		r.Comment = fmt.Sprintf("%s (restriction_id %d)", importedComment, row.RestrictionID)
	}
	if err := r.Validate(); err != nil {
		return rules.Rule{}, fmt.Errorf("%s: %w", row.where(), err)
	}
	return r, nil
}

// importedComment starts the comment of every rule ToRule makes; it is how
// `import ispconfig --sync` tells the rules an import created from rules
// made by hand.
const importedComment = "imported from ISPConfig"

// Imported reports whether a rule's comment marks it as created by an
// ISPConfig import (ToRule).
func Imported(comment string) bool {
	rest, ok := strings.CutPrefix(comment, importedComment)
	return ok && (rest == "" || strings.HasPrefix(rest, " (restriction_id "))
}

// ToRules converts every row. On any failure it returns no rules and an
// error listing the failing rows, so an import is all or nothing.
func ToRules(rows []Row) ([]rules.Rule, error) {
	out := make([]rules.Rule, 0, len(rows))
	var errs errorList
	for _, row := range rows {
		r, err := ToRule(row)
		if err != nil {
			errs.add(err)
			continue
		}
		out = append(out, r)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// errorList gathers the problems of one input, keeping the first
// maxErrors.
type errorList struct {
	errs []error
	more int
}

func (l *errorList) add(err error) {
	if len(l.errs) < maxErrors {
		l.errs = append(l.errs, err)
	} else {
		l.more++
	}
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	errs := l.errs
	if l.more > 0 {
		errs = append(errs[:len(errs):len(errs)], fmt.Errorf("... and %d more", l.more))
	}
	return errors.Join(errs...)
}

// limits are the Max constants; tests shrink them.
type limits struct {
	input int64 // bytes of input
	line  int   // bytes per CSV line
	value int   // bytes per literal in a dump
	rows  int   // rows per import
}

func defaultLimits() limits {
	return limits{input: MaxInputBytes, line: MaxLineBytes, value: MaxValueBytes, rows: MaxRows}
}
