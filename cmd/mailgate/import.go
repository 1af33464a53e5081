package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"mailgate/internal/api"
	"mailgate/internal/ispconfig"
	"mailgate/internal/rules"
)

// importBatch is how many rules one API request carries; each batch is
// one transaction.
const importBatch = 50_000

func cmdImportISPConfig(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	csvPath := fs.String("csv", "", "CSV or TSV file with columns email, ip, mode, service")
	sqlPath := fs.String("sql", "", "mysqldump file with the mail_user and mail_user_ip_restriction tables")
	dsn := fs.String("mysql", "", "MySQL DSN of the ISPConfig database (user:pass@tcp(host:3306)/dbispconfig)")
	dryRun := fs.Bool("dry-run", false, "show what would be imported, change nothing")
	jsonOut := fs.Bool("json", false, "print the summary (and with --dry-run the rules) as JSON")
	syncFlag := fs.Bool("sync", false, "also remove the rules an earlier ISPConfig import added that ISPConfig no longer has (rules made by hand are never removed)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: import ispconfig: unexpected argument %q", errUsage, pos[0])
	}
	given := 0
	for _, s := range []string{*csvPath, *sqlPath, *dsn} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return fmt.Errorf("%w: import ispconfig: give exactly one of --csv, --sql and --mysql", errUsage)
	}

	var rows []ispconfig.Row
	var err error
	switch {
	case *dsn != "":
		rows, err = ispconfig.ReadMySQL(ctx, *dsn)
	default:
		path, read := *csvPath, ispconfig.ReadCSV
		if *sqlPath != "" {
			path, read = *sqlPath, ispconfig.ReadSQLDump
		}
		var f *os.File
		if f, err = os.Open(path); err != nil {
			return fmt.Errorf("import ispconfig: %w", err)
		}
		rows, err = read(f)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("import ispconfig: %w", err)
	}

	rs := make([]rules.Rule, len(rows))
	for i, row := range rows {
		if rs[i], err = ispconfig.ToRule(row); err != nil {
			return fmt.Errorf("import ispconfig: line %d: %w", row.Line, err)
		}
	}
	var sync func(*api.RuleJSON) bool
	if *syncFlag {
		sync = func(j *api.RuleJSON) bool { return j.Scope == "account" && ispconfig.Imported(j.Comment) }
	}
	return importRules(ctx, cf, "import ispconfig", "rows", rs, *dryRun, *jsonOut, sync, stdout)
}

// ruleKey is what makes two rules the same for an import: a rule in the
// file equal to one already stored is skipped.
type ruleKey struct{ scope, account, service, action, match string }

func keyOf(j *api.RuleJSON) ruleKey {
	return ruleKey{j.Scope, j.Account, j.Service, j.Action, j.Match}
}

// importPlan is what an import would do.
type importPlan struct {
	existing []api.RuleJSON
	todo     []api.RuleJSON
	present  int
}

// planImport leaves out of rs the rules already present (same scope,
// account, service, action and match) and duplicates within rs, so
// running an import twice adds nothing the second time.
func planImport(ctx context.Context, c *api.Client, what string, rs []rules.Rule) (importPlan, error) {
	existing, err := c.Rules(ctx, "")
	if err != nil {
		return importPlan{}, fmt.Errorf("%s: reading current rules: %w", what, err)
	}
	p := importPlan{existing: existing}
	have := map[ruleKey]bool{}
	for i := range existing {
		have[keyOf(&existing[i])] = true
	}
	for i := range rs {
		j := api.FromRule(&rs[i])
		k := keyOf(&j)
		if have[k] {
			p.present++
			continue
		}
		have[k] = true
		p.todo = append(p.todo, j)
	}
	return p, nil
}

// applyImport adds todo through the admin API in batches; each batch is
// one transaction.
func applyImport(ctx context.Context, c *api.Client, what string, todo []api.RuleJSON) (int, error) {
	done, err := applyImportRules(ctx, c, what, todo)
	return len(done), err
}

// applyImportRules is applyImport returning the rules added.
func applyImportRules(ctx context.Context, c *api.Client, what string, todo []api.RuleJSON) ([]api.RuleJSON, error) {
	done := []api.RuleJSON{}
	for start := 0; start < len(todo); start += importBatch {
		end := min(start+importBatch, len(todo))
		out, err := c.AddRules(ctx, todo[start:end])
		if err != nil {
			return done, fmt.Errorf("%s: after %d rules added: %w", what, len(done), err)
		}
		done = append(done, out...)
	}
	return done, nil
}

// importJSON is what import --json prints.
type importJSON struct {
	Read    int            `json:"read"`
	Added   int            `json:"added"`
	Present int            `json:"present"`
	Removed *int           `json:"removed,omitempty"` // with --sync: removed, or with dry_run would be
	DryRun  bool           `json:"dry_run"`
	Rules   []api.RuleJSON `json:"rules"` // added, or with dry_run those that would be
	Stale   []api.RuleJSON `json:"removed_rules,omitempty"`
}

// importRules adds rs through the admin API, leaving out rules already
// present. what names the command, unit what rs was read from, for the
// summary. With sync, stored rules that isImported marks as created by an
// earlier run of the same import and that rs no longer has are removed.
func importRules(ctx context.Context, cf clientFlags, what, unit string, rs []rules.Rule, dryRun, jsonOut bool, sync func(*api.RuleJSON) bool, stdout io.Writer) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	p, err := planImport(ctx, c, what, rs)
	if err != nil {
		return err
	}
	var stale []api.RuleJSON
	if sync != nil {
		want := map[ruleKey]bool{}
		for i := range rs {
			j := api.FromRule(&rs[i])
			want[keyOf(&j)] = true
		}
		for i := range p.existing {
			if e := &p.existing[i]; e.Source == "" && sync(e) && !want[keyOf(e)] {
				stale = append(stale, *e)
			}
		}
	}
	summary := importJSON{Read: len(rs), Present: p.present, DryRun: dryRun, Rules: []api.RuleJSON{}}
	if dryRun {
		summary.Added = len(p.todo)
		if p.todo != nil {
			summary.Rules = p.todo
		}
		if sync != nil {
			n := len(stale)
			summary.Removed, summary.Stale = &n, stale
		}
		if jsonOut {
			return printJSON(stdout, summary)
		}
		for i := range p.todo {
			fmt.Fprintf(stdout, "would add: %s\n", describeRule(&p.todo[i]))
		}
		for i := range stale {
			fmt.Fprintf(stdout, "would remove rule %d: %s\n", stale[i].ID, describeRule(&stale[i]))
		}
		fmt.Fprintf(stdout, "%d %s read, %d rules would be added, %d already present", len(rs), unit, len(p.todo), p.present)
		if sync != nil {
			fmt.Fprintf(stdout, ", %d would be removed", len(stale))
		}
		fmt.Fprintln(stdout)
		return nil
	}
	done, err := applyImportRules(ctx, c, what, p.todo)
	if err != nil {
		return err
	}
	summary.Added, summary.Rules = len(done), done
	removed := 0
	for i := range stale {
		if _, err := c.RemoveRule(ctx, stale[i].ID); err != nil {
			return fmt.Errorf("%s: %d rules added; removing rule %d after %d removed: %w", what, len(done), stale[i].ID, removed, err)
		}
		if !jsonOut {
			fmt.Fprintf(stdout, "removed rule %d: %s\n", stale[i].ID, describeRule(&stale[i]))
		}
		removed++
	}
	if sync != nil {
		summary.Removed, summary.Stale = &removed, stale
	}
	if jsonOut {
		return printJSON(stdout, summary)
	}
	fmt.Fprintf(stdout, "%d %s read, %d rules added, %d already present", len(rs), unit, len(done), p.present)
	if sync != nil {
		fmt.Fprintf(stdout, ", %d removed", removed)
	}
	fmt.Fprintln(stdout)
	return nil
}

func cmdImportUserAllowed(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	path := fs.String("file", "", "the per-user exception file of the nginx country script (user-allowed.php): login|CC or login|IP per line")
	dryRun := fs.Bool("dry-run", false, "show what would be imported, change nothing")
	jsonOut := fs.Bool("json", false, "print the summary (and with --dry-run the rules) as JSON")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: import user-allowed: unexpected argument %q", errUsage, pos[0])
	}
	if *path == "" {
		return fmt.Errorf("%w: import user-allowed: --file is required", errUsage)
	}
	f, err := os.Open(*path)
	if err != nil {
		return fmt.Errorf("import user-allowed: %w", err)
	}
	rs, err := rules.ReadUserAllowed(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("import user-allowed: %s: %w", *path, err)
	}
	return importRules(ctx, cf, "import user-allowed", "lines", rs, *dryRun, *jsonOut, nil, stdout)
}
