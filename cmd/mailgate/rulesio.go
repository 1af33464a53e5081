package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/rules"
)

// Limits of `rule import`: a rule line is a few hundred bytes; the file
// limit matches the admin API's request limit.
const (
	maxRuleLine = 64 << 10
	maxRuleFile = 64 << 20
)

// ruleLine is one line of `rule export`: every field needed to re-create
// the rule. Created and CreatedBy say where the rule came from; an import
// does not restore them (the audit trail names who imported it).
type ruleLine struct {
	Scope     string     `json:"scope"`
	Account   string     `json:"account,omitempty"`
	Service   string     `json:"service"`
	Action    string     `json:"action"`
	Match     string     `json:"match"`
	Comment   string     `json:"comment,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	Created   *time.Time `json:"created,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
}

func toRuleLine(j *api.RuleJSON) ruleLine {
	l := ruleLine{Scope: j.Scope, Account: j.Account, Service: j.Service, Action: j.Action,
		Match: j.Match, Comment: j.Comment, CreatedBy: j.CreatedBy}
	if j.Expires != nil {
		e := j.Expires.UTC().Truncate(time.Second)
		l.Expires = &e
	}
	if !j.Created.IsZero() {
		c := j.Created.UTC().Truncate(time.Second)
		l.Created = &c
	}
	return l
}

// parseRuleLine reads one export line into a validated rule. Unknown
// fields and trailing data are errors: a typo must not drop a field.
func parseRuleLine(b []byte) (rules.Rule, error) {
	if len(b) > maxRuleLine {
		return rules.Rule{}, fmt.Errorf("line longer than %d bytes", maxRuleLine)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l ruleLine
	if err := dec.Decode(&l); err != nil {
		return rules.Rule{}, fmt.Errorf("not a rule object: %w", err)
	}
	if dec.More() {
		return rules.Rule{}, errors.New("more than one JSON value on the line")
	}
	if _, err := dec.Token(); err != io.EOF {
		return rules.Rule{}, errors.New("trailing data after the rule object")
	}
	if l.Scope == "" {
		return rules.Rule{}, errors.New("scope: missing (account or global)")
	}
	if l.Service == "" {
		return rules.Rule{}, errors.New("service: missing")
	}
	if l.Match == "" {
		return rules.Rule{}, errors.New("match: missing")
	}
	j := api.RuleJSON{Scope: l.Scope, Account: l.Account, Service: l.Service, Action: l.Action,
		Match: l.Match, Comment: l.Comment, Expires: l.Expires}
	r, err := j.Rule()
	if err != nil {
		return rules.Rule{}, err
	}
	return r, nil
}

// readRuleLines reads a whole export. Empty lines and lines starting with
// # are skipped. Every bad line is reported (up to 20), each by its
// number; on any error no rule is returned, so an import is all or
// nothing.
func readRuleLines(r io.Reader) ([]rules.Rule, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxRuleFile+1), 64<<10)
	var out []rules.Rule
	var errs []string
	total, n := 0, 0
	for {
		line, err := readLimitedLine(br, maxRuleLine)
		if err == io.EOF {
			break
		}
		n++
		total += len(line) + 1
		if total > maxRuleFile+1 {
			return nil, fmt.Errorf("the file is larger than %d MiB; split it", maxRuleFile>>20)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", n, err))
			if errors.Is(err, errLineTooLong) {
				continue
			}
			return nil, errors.New(strings.Join(errs, "\n"))
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		rl, err := parseRuleLine(line)
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		out = append(out, rl)
	}
	if len(errs) > 0 {
		bad, more := len(errs), ""
		if len(errs) > 20 {
			more = fmt.Sprintf("\n... and %d more bad lines", len(errs)-20)
			errs = errs[:20]
		}
		return nil, fmt.Errorf("%d bad line(s), nothing imported:\n%s%s", bad, strings.Join(errs, "\n"), more)
	}
	return out, nil
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxRuleLine)

// readLimitedLine returns the next line without its newline. A line longer
// than limit is consumed and reported as errLineTooLong.
func readLimitedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			if err == io.EOF && line != nil {
				return line, nil
			}
			return nil, err
		}
		if len(line)+len(chunk) > limit {
			for isPrefix {
				if _, isPrefix, err = br.ReadLine(); err != nil {
					break
				}
			}
			return []byte{}, errLineTooLong
		}
		line = append(line, chunk...)
		if !isPrefix {
			return line, nil
		}
	}
}

func cmdRuleExport(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	file := fs.String("file", "", "write to this new file (mode 0600; an existing file is refused) instead of standard output")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: rule export: unexpected argument %q", errUsage, pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	rs, err := c.Rules(ctx, "")
	if err != nil {
		return fmt.Errorf("rule export: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	n := 0
	for i := range rs {
		if rs[i].Source != "" { // from the config file: it is exported with the config
			continue
		}
		if err := enc.Encode(toRuleLine(&rs[i])); err != nil {
			return fmt.Errorf("rule export: %w", err)
		}
		n++
	}
	if *file == "" {
		_, err = stdout.Write(buf.Bytes())
		return err
	}
	f, err := os.OpenFile(*file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rule export: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("rule export: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rule export: %w", err)
	}
	fmt.Fprintf(stdout, "%d rules written to %s\n", n, *file)
	return nil
}

func cmdRuleImport(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	file := fs.String("file", "", "a file written by `mailgate rule export` (JSON lines), - for standard input")
	dryRun := fs.Bool("dry-run", false, "show what would be added, change nothing")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: rule import: unexpected argument %q", errUsage, pos[0])
	}
	if *file == "" {
		return fmt.Errorf("%w: rule import: --file is required", errUsage)
	}
	in := io.Reader(os.Stdin)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("rule import: %w", err)
		}
		defer f.Close()
		in = f
	}
	rs, err := readRuleLines(in)
	if err != nil {
		return fmt.Errorf("rule import: %s: %w", *file, err)
	}
	// An expired rule decides nothing; importing it would only clutter.
	now := time.Now()
	live := rs[:0]
	expired := 0
	for _, r := range rs {
		if !r.Expires.IsZero() && !r.Expires.After(now) {
			expired++
			continue
		}
		live = append(live, r)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	plan, err := planImport(ctx, c, "rule import", live)
	if err != nil {
		return err
	}
	res := importResult{Read: len(rs), Expired: expired, Present: plan.present, DryRun: *dryRun}
	if !*dryRun {
		if res.Added, err = applyImport(ctx, c, "rule import", plan.todo); err != nil {
			return err
		}
	} else {
		res.WouldAdd = len(plan.todo)
	}
	if *jsonOut {
		res.Rules = plan.todo
		if res.Rules == nil {
			res.Rules = []api.RuleJSON{}
		}
		return printJSON(stdout, res)
	}
	if *dryRun {
		for i := range plan.todo {
			fmt.Fprintf(stdout, "would add: %s\n", describeRule(&plan.todo[i]))
		}
		fmt.Fprintf(stdout, "%d rules read, %d would be added, %d already present, %d expired (skipped)\n", res.Read, res.WouldAdd, res.Present, res.Expired)
		return nil
	}
	fmt.Fprintf(stdout, "%d rules read, %d added, %d already present, %d expired (skipped)\n", res.Read, res.Added, res.Present, res.Expired)
	return nil
}

// importResult is `rule import --json`.
type importResult struct {
	Read     int            `json:"read"`
	Added    int            `json:"added"`
	WouldAdd int            `json:"would_add"`
	Present  int            `json:"already_present"`
	Expired  int            `json:"expired"`
	DryRun   bool           `json:"dry_run"`
	Rules    []api.RuleJSON `json:"rules"` // the rules added (or that would be)
}
