package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"mailgate/internal/api"
	"mailgate/internal/ispconfig"
)

// importBatch is how many rules one API request carries; each batch is
// one transaction.
const importBatch = 50_000

func cmdImportISPConfig(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("import ispconfig", flag.ContinueOnError)
	cf := addClientFlags(fs)
	csvPath := fs.String("csv", "", "CSV or TSV file with columns email, ip, mode, service")
	sqlPath := fs.String("sql", "", "mysqldump file with the mail_user and mail_user_ip_restriction tables")
	dsn := fs.String("mysql", "", "MySQL DSN of the ISPConfig database (user:pass@tcp(host:3306)/dbispconfig)")
	dryRun := fs.Bool("dry-run", false, "show what would be imported, change nothing")
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

	c, err := cf.client()
	if err != nil {
		return err
	}
	existing, err := c.Rules(ctx, "")
	if err != nil {
		return fmt.Errorf("import ispconfig: reading current rules: %w", err)
	}
	type key struct{ account, service, action, match string }
	have := map[key]bool{}
	for _, r := range existing {
		have[key{r.Account, r.Service, r.Action, r.Match}] = true
	}

	var todo []api.RuleJSON
	skipped := 0
	for _, row := range rows {
		r, err := ispconfig.ToRule(row)
		if err != nil {
			return fmt.Errorf("import ispconfig: line %d: %w", row.Line, err)
		}
		j := api.FromRule(&r)
		k := key{j.Account, j.Service, j.Action, j.Match}
		if have[k] {
			skipped++
			continue
		}
		have[k] = true
		todo = append(todo, j)
	}
	if *dryRun {
		for i := range todo {
			fmt.Fprintf(stdout, "would add: %s\n", describeRule(&todo[i]))
		}
		fmt.Fprintf(stdout, "%d rows read, %d rules would be added, %d already present\n", len(rows), len(todo), skipped)
		return nil
	}
	added := 0
	for start := 0; start < len(todo); start += importBatch {
		end := min(start+importBatch, len(todo))
		out, err := c.AddRules(ctx, todo[start:end])
		if err != nil {
			return fmt.Errorf("import ispconfig: after %d rules added: %w", added, err)
		}
		added += len(out)
	}
	fmt.Fprintf(stdout, "%d rows read, %d rules added, %d already present\n", len(rows), added, skipped)
	return nil
}
