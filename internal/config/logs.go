package config

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Logs configures the log door: mail logs read for login outcomes.
type Logs struct {
	Enabled  bool          `toml:"enabled" doc:"Read the mail logs below and count what they show: failed logins toward bans, successful IMAP and POP3 logins as relay permits and firewall trust, as if a door had reported them. For servers without a policy API (Postfix with Cyrus SASL, a Dovecot without auth_policy_server_url). Off by default."`
	StateDir string        `toml:"state_dir" doc:"Directory of the saved positions (one file per source: inode, offset and first-line hash of a file; the journal's cursor). \"\" = the directory of store.path (/var/lib/mailgate on a server)."`
	Poll     time.Duration `toml:"poll" doc:"How often the files are checked for new lines, rotation and truncation, 10ms to 10s."`
	MaxLine  int           `toml:"max_line" doc:"Longest line read, 256 to 65536 bytes; longer lines are skipped (and counted), never held whole."`
	MaxAge   time.Duration `toml:"max_age" doc:"Lines older than this (by the time they carry) are read but not counted, so that after a long stop the backlog does not ban addresses for what they did hours ago. 0 = count every line."`
	LagBytes int64         `toml:"lag_bytes" doc:"A file whose unread part is larger than this is reported as lagging in 'mailgate status' and the log, 4096 to 1073741824."`

	Files    []LogFile   `toml:"file" doc:"A log file to follow: rotation by rename (the old file is read to its end, then the new one), copytruncate and a deleted file are followed; a file that does not exist yet is waited for. The first start reads from the end of an existing file; later starts go on from the saved position. Repeat the table for more files."`
	Journald LogJournald `toml:"journald" doc:"The systemd journal, read through 'journalctl --follow --output=json' (a subprocess, started again when it ends; its position is kept in a cursor file)."`
}

// LogFile is one [[logs.file]] entry.
type LogFile struct {
	Path     string   `toml:"path" doc:"The log file, an absolute path."`
	Programs []string `toml:"programs" doc:"Whose lines count: dovecot, postfix, nginx; name the programs that write the file, so that a line forged in another program's format is never taken. nginx only alone: nginx writes a client's login into error.log as sent, newlines included, so its file could hold a forged Dovecot or Postfix line. Empty = automatic: dovecot and postfix, except those whose logins a door already reports, so that no failure counts twice: with [dovecot] enabled, dovecot and postfix (Dovecot's auth policy sees Postfix's SASL checks too, when Postfix uses Dovecot SASL: with Cyrus SASL, set [\"postfix\"]); with [nginx] enabled, dovecot (behind nginx, Dovecot logs nginx's address). nginx's error.log is never read unless named with [\"nginx\"]."`
	Services []string `toml:"services" doc:"Which services count (imap, pop3, smtp, submission, sieve). Empty = all."`
}

// LogJournald is [logs.journald].
type LogJournald struct {
	Enabled     bool     `toml:"enabled" doc:"Read the journal."`
	Command     string   `toml:"command" doc:"The journalctl program."`
	Units       []string `toml:"units" doc:"Systemd units whose entries are read (_SYSTEMD_UNIT), e.g. [\"dovecot.service\", \"postfix@-.service\"]."`
	Identifiers []string `toml:"identifiers" doc:"Syslog identifiers whose entries are read too, e.g. [\"postfix/smtpd\", \"saslauthd\"]. Units and identifiers both empty = every entry."`
	Programs    []string `toml:"programs" doc:"Whose entries count: dovecot, postfix, nginx (a journal entry keeps a newline inside its message, so nginx may share the journal with the others). Empty = automatic, as for [[logs.file]] programs, but nginx included unless the nginx door is on."`
	Services    []string `toml:"services" doc:"Which services count, as for [[logs.file]] services."`
}

// Bounds of the [logs] section.
const (
	minLogPoll     = 10 * time.Millisecond
	maxLogPoll     = 10 * time.Second
	minLogLine     = 256
	maxLogLine     = 64 << 10
	minLagBytes    = 4 << 10
	maxLagBytes    = 1 << 30
	maxLogSources  = 64
	maxJournalArgs = 64
)

var (
	logPrograms = []string{"dovecot", "postfix", "nginx"}
	logServices = []string{"imap", "pop3", "smtp", "submission", "sieve"}
)

func defaultLogs() Logs {
	return Logs{
		Poll:     250 * time.Millisecond,
		MaxLine:  16 << 10,
		MaxAge:   10 * time.Minute,
		LagBytes: 1 << 20,
		Files:    []LogFile{},
		Journald: LogJournald{
			Command:     "journalctl",
			Units:       []string{},
			Identifiers: []string{},
			Programs:    []string{},
			Services:    []string{},
		},
	}
}

// LogStateDir is where the log door keeps its positions.
func (c *Config) LogStateDir() string {
	if c.Logs.StateDir != "" {
		return c.Logs.StateDir
	}
	return filepath.Dir(c.Store.Path)
}

// LogPrograms returns the programs whose lines count, given a source's
// programs list (empty = automatic, see LogFile.Programs). A file's
// automatic list never has nginx: nginx writes a client's login into its
// error.log raw, newlines included, so a client can write a whole line
// in Dovecot's or Postfix's format there; nginx's file is read only when
// named, and then alone (validate). The journal keeps a newline inside
// one entry's message, so the forgery does not reach it.
func (c *Config) LogPrograms(list []string, file bool) []string {
	if len(list) > 0 {
		return list
	}
	var out []string
	for _, p := range logPrograms {
		// With the Dovecot door on, Dovecot reports its logins, and
		// Postfix's SASL checks when it uses Dovecot SASL (the usual
		// setup; Cyrus SASL needs programs = ["postfix"]). Behind the
		// nginx door, nginx reports the logins, and Dovecot logs nginx's
		// address, not the client's.
		if p == "dovecot" && (c.Dovecot.Enabled || c.Nginx.Enabled) || p == "postfix" && c.Dovecot.Enabled || p == "nginx" && (c.Nginx.Enabled || file) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (l *Logs) validate(bad func(key, format string, args ...any)) {
	if l.StateDir != "" && !filepath.IsAbs(l.StateDir) {
		bad("logs.state_dir", "%q is not an absolute path", l.StateDir)
	}
	if l.Poll < minLogPoll || l.Poll > maxLogPoll {
		bad("logs.poll", "%v is out of range (want %v to %v)", l.Poll, minLogPoll, maxLogPoll)
	}
	if l.MaxLine < minLogLine || l.MaxLine > maxLogLine {
		bad("logs.max_line", "%d is out of range (want %d to %d)", l.MaxLine, minLogLine, maxLogLine)
	}
	if l.MaxAge < 0 {
		bad("logs.max_age", "%v is negative (want 0 for no limit, or a duration)", l.MaxAge)
	}
	if l.LagBytes < minLagBytes || l.LagBytes > maxLagBytes {
		bad("logs.lag_bytes", "%d is out of range (want %d to %d)", l.LagBytes, minLagBytes, maxLagBytes)
	}
	if len(l.Files) > maxLogSources {
		bad("logs.file", "%d files; at most %d", len(l.Files), maxLogSources)
	}
	for i, f := range l.Files {
		key := "logs.file[" + strconv.Itoa(i) + "]"
		switch {
		case f.Path == "":
			bad(key+".path", "empty (want the log file's absolute path)")
		case !filepath.IsAbs(f.Path):
			bad(key+".path", "%q is not an absolute path", f.Path)
		case len(f.Path) > maxPathLen || strings.ContainsAny(f.Path, "\x00\n"):
			bad(key+".path", "too long, or contains a NUL byte or a line break")
		}
		for j := range i {
			if filepath.Clean(l.Files[j].Path) == filepath.Clean(f.Path) {
				bad(key+".path", "%q is already logs.file[%d]", f.Path, j)
			}
		}
		checkList(bad, key+".programs", f.Programs, logPrograms)
		if slices.Contains(f.Programs, "nginx") && len(f.Programs) > 1 {
			bad(key+".programs", "nginx with other programs: nginx writes a client's login into its error.log as sent, newlines included, so a client could write a Dovecot or Postfix line there; give nginx's file a [[logs.file]] of its own with programs = [\"nginx\"]")
		}
		checkList(bad, key+".services", f.Services, logServices)
	}
	j := &l.Journald
	if j.Enabled && j.Command == "" {
		bad("logs.journald.command", "empty (want journalctl's path)")
	}
	for _, k := range []struct {
		key  string
		list []string
	}{{"logs.journald.units", j.Units}, {"logs.journald.identifiers", j.Identifiers}} {
		if len(k.list) > maxJournalArgs {
			bad(k.key, "%d entries; at most %d", len(k.list), maxJournalArgs)
		}
		for i, v := range k.list {
			if v == "" || len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '=' }) {
				bad(k.key+"["+strconv.Itoa(i)+"]", "%q is not a unit or identifier name (no spaces, '=' or control characters)", v)
			}
		}
	}
	checkList(bad, "logs.journald.programs", j.Programs, logPrograms)
	checkList(bad, "logs.journald.services", j.Services, logServices)
	if l.Enabled && len(l.Files) == 0 && !j.Enabled {
		bad("logs.enabled", "true, but there is no [[logs.file]] and [logs.journald] is not enabled")
	}
}

func checkList(bad func(key, format string, args ...any), key string, list, allowed []string) {
	for i, v := range list {
		if !slices.Contains(allowed, v) {
			bad(key+"["+strconv.Itoa(i)+"]", "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
}
