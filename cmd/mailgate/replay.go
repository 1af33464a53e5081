package main

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"mailgate/internal/config"
	"mailgate/internal/maillog"
	"mailgate/internal/relay"
	"mailgate/internal/replay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func cmdReplay(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cfgPath := fs.String("config", "", "the config `FILE` whose rules and thresholds to replay with (default "+config.DefaultPath+" if it exists)")
	var logs, events stringList
	fs.Var(&logs, "log", "a mail log `FILE` to replay (repeatable; more files may follow as arguments; .gz is read compressed; - is stdin)")
	fs.Var(&events, "events", "an events `FILE` (JSON lines, docs/replay.md) to replay (repeatable; more may follow as arguments)")
	programs := fs.String("programs", "", "whose lines count: a comma-separated `LIST` of dovecot, postfix, nginx (default dovecot,postfix for text logs, as the log door's files; every program for --journal); nginx's error.log only alone: a client can write whole lines into it")
	journal := fs.Bool("journal", false, "the --log files are journalctl's JSON output (journalctl --output=json)")
	useStore := fs.Bool("store", false, "also use the rules stored in the config's store (store.path), opened read-only, as the daemon does")
	from := fs.String("from", "", "replay only events at or after this `TIME` (RFC 3339, or 2006-01-02[ 15:04[:05]] in UTC)")
	to := fs.String("to", "", "replay only events before this `TIME`")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(logs) > 0 && len(events) > 0:
		return fmt.Errorf("%w: replay: give --log or --events, not both", errUsage)
	case len(logs) > 0:
		logs = append(logs, pos...)
	case len(events) > 0:
		events = append(events, pos...)
	default:
		return fmt.Errorf("%w: replay: give the input (--log FILE, or --events FILE)", errUsage)
	}
	var opt replay.Options
	if opt.From, err = parseWhen(*from); err != nil {
		return fmt.Errorf("%w: replay: --from: %v", errUsage, err)
	}
	if opt.To, err = parseWhen(*to); err != nil {
		return fmt.Errorf("%w: replay: --to: %v", errUsage, err)
	}
	if !opt.From.IsZero() && !opt.To.IsZero() && !opt.From.Before(opt.To) {
		return fmt.Errorf("%w: replay: --from must be before --to", errUsage)
	}
	cfg, _, err := config.LoadOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	in := replayInput{journal: *journal}
	if in.programs, err = replayPrograms(*programs, *journal); err != nil {
		return err
	}
	defer in.close()
	if len(logs) > 0 {
		err = in.open(logs, true)
	} else {
		err = in.open(events, false)
	}
	if err != nil {
		return err
	}
	rep, err := runReplay(ctx, &cfg, *useStore, opt, in.source())
	if err != nil {
		return err
	}
	in.count(rep)
	if *jsonOut {
		return printJSON(stdout, rep)
	}
	return rep.WriteText(stdout)
}

// replayPrograms parses --programs. Its default and its one rule are the
// log door's for a file (config.LogPrograms): nginx writes a client's
// login into its error.log raw, newlines included, so a text log is read
// for nginx alone or not for nginx; the journal keeps a newline inside an
// entry, so it may mix them.
func replayPrograms(list string, journal bool) ([]string, error) {
	if list == "" {
		if journal {
			return nil, nil
		}
		return []string{maillog.Dovecot, maillog.Postfix}, nil
	}
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case maillog.Dovecot, maillog.Postfix, maillog.Nginx:
		default:
			return nil, fmt.Errorf("%w: replay: --programs: %q is not one of dovecot, postfix, nginx", errUsage, p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if !journal && slices.Contains(out, maillog.Nginx) && len(out) > 1 {
		return nil, fmt.Errorf("%w: replay: --programs: nginx with other programs: nginx writes a client's login into its error.log as sent, newlines included, so a client could write a Dovecot or Postfix line there; replay nginx's log with --programs nginx alone", errUsage)
	}
	return out, nil
}

// runReplay replays src through a new engine built from cfg as serve
// builds it (newEngine), with the config's rules and, with withStore,
// the stored ones read from cfg.Store.Path without writing it. It is the
// library entry point of 'mailgate replay' (the scenario suite calls it).
func runReplay(ctx context.Context, cfg *config.Config, withStore bool, opt replay.Options, src replay.Source) (*replay.Report, error) {
	fixed, err := configRules(cfg)
	if err != nil {
		return nil, err
	}
	rs := fixed
	if withStore {
		if cfg.Store.Driver == "postgres" {
			return nil, errReplayPostgres
		}
		st, err := store.OpenSQLiteReadOnly(cfg.Store.Path)
		if err != nil {
			return nil, fmt.Errorf("replay --store: %w", err)
		}
		stored, err := st.Rules(ctx)
		st.Close()
		if err != nil {
			return nil, fmt.Errorf("replay --store: %w", err)
		}
		// Every stored rule, also one expired now: the index judges
		// expiry by each event's time.
		rs = append(stored, fixed...)
	}
	idx := rules.NewIndex()
	idx.Replace(rs)
	// A GeoIP database is read, not written; its watcher stops with
	// the replay.
	geo := &geoHolder{log: slog.New(slog.DiscardHandler)}
	defer geo.close()
	engine, tracker, err := newEngine(cfg, idx, geo)
	if err != nil {
		return nil, err
	}
	var permits *relay.Table
	if cfg.Relay.Enabled {
		rc, err := cfg.Relay.RelayConfig()
		if err != nil {
			return nil, err
		}
		permits = relay.New(rc)
	}
	return replay.Run(ctx, replay.Setup{Engine: engine, Tracker: tracker, Permits: permits}, opt, src)
}

// parseWhen parses --from and --to: RFC 3339, or a date with an optional
// time of day in UTC. "" is the zero time (no bound).
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-12-01T08:00:00Z) or 2026-12-01[ 08:00[:00]] (UTC)", s)
}

// replayInput is the open input files of a replay.
type replayInput struct {
	journal  bool
	programs []string
	closers  []io.Closer
	srcs     []replay.Source
	logs     []*replay.LogReader
	events   []*replay.EventsReader
}

func (in *replayInput) open(names []string, logs bool) error {
	stdin := false
	for _, name := range names {
		var r io.Reader
		ref := time.Now()
		if name == "-" {
			if stdin {
				return fmt.Errorf("%w: replay: - (stdin) given twice", errUsage)
			}
			stdin, r = true, os.Stdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			in.closers = append(in.closers, f)
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			if fi.IsDir() {
				return fmt.Errorf("replay: %s is a directory", name)
			}
			ref = fi.ModTime()
			r = f
			if strings.HasSuffix(name, ".gz") {
				z, err := gzip.NewReader(f)
				if err != nil {
					return fmt.Errorf("replay: %s: %w", name, err)
				}
				in.closers = append(in.closers, z)
				r = z
			}
		}
		if logs {
			l := replay.NewLogReader(r, name, ref, in.journal)
			l.Programs(in.programs)
			in.logs = append(in.logs, l)
			in.srcs = append(in.srcs, l)
		} else {
			e := replay.NewEventsReader(r, name)
			in.events = append(in.events, e)
			in.srcs = append(in.srcs, e)
		}
	}
	return nil
}

func (in *replayInput) source() replay.Source { return replay.Merge(in.srcs...) }

// count fills the report's line counts.
func (in *replayInput) count(rep *replay.Report) {
	rep.Input.Files = len(in.srcs)
	for _, l := range in.logs {
		rep.Input.Lines += l.Lines()
	}
	for _, e := range in.events {
		rep.Input.Lines += e.Lines()
	}
}

func (in *replayInput) close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i].Close()
	}
}
