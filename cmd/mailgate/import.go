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
	return importRules(ctx, cf, "import ispconfig", "rows", rs, *dryRun, *jsonOut, stdout)
}

// importRules adds rs through the admin API in batches, leaving out rules
// already present (same account, service, action and match), so running
// an import twice adds nothing the second time. what names the command,
// unit what rs was read from, for the summary.
// importJSON is what import --json prints.
type importJSON struct {
	Read    int            `json:"read"`
	Added   int            `json:"added"`
	Present int            `json:"present"`
	DryRun  bool           `json:"dry_run"`
	Rules   []api.RuleJSON `json:"rules"` // added, or with dry_run those that would be
}

func importRules(ctx context.Context, cf clientFlags, what, unit string, rs []rules.Rule, dryRun, jsonOut bool, stdout io.Writer) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	existing, err := c.Rules(ctx, "")
	if err != nil {
		return fmt.Errorf("%s: reading current rules: %w", what, err)
	}
	type key struct{ account, service, action, match string }
	have := map[key]bool{}
	for _, r := range existing {
		have[key{r.Account, r.Service, r.Action, r.Match}] = true
	}

	var todo []api.RuleJSON
	skipped := 0
	for i := range rs {
		j := api.FromRule(&rs[i])
		k := key{j.Account, j.Service, j.Action, j.Match}
		if have[k] {
			skipped++
			continue
		}
		have[k] = true
		todo = append(todo, j)
	}
	if dryRun && jsonOut {
		if todo == nil {
			todo = []api.RuleJSON{}
		}
		return printJSON(stdout, importJSON{Read: len(rs), Added: len(todo), Present: skipped, DryRun: true, Rules: todo})
	}
	if dryRun {
		for i := range todo {
			fmt.Fprintf(stdout, "would add: %s\n", describeRule(&todo[i]))
		}
		fmt.Fprintf(stdout, "%d %s read, %d rules would be added, %d already present\n", len(rs), unit, len(todo), skipped)
		return nil
	}
	added := 0
	done := []api.RuleJSON{}
	for start := 0; start < len(todo); start += importBatch {
		end := min(start+importBatch, len(todo))
		out, err := c.AddRules(ctx, todo[start:end])
		if err != nil {
			return fmt.Errorf("%s: after %d rules added: %w", what, added, err)
		}
		added += len(out)
		done = append(done, out...)
	}
	if jsonOut {
		return printJSON(stdout, importJSON{Read: len(rs), Added: added, Present: skipped, Rules: done})
	}
	fmt.Fprintf(stdout, "%d %s read, %d rules added, %d already present\n", len(rs), unit, added, skipped)
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
	return importRules(ctx, cf, "import user-allowed", "lines", rs, *dryRun, *jsonOut, stdout)
}
