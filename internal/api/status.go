package api

import (
	"net/http"
	"strings"
	"time"

	"mailgate/internal/abuse"
)

// BruteForce is what the API needs from the brute-force tracker: the
// state of "under attack" and what it tracks. *abuse.Tracker is one.
type BruteForce interface {
	SurgeState(now time.Time) abuse.Surge
	EndSurge(now time.Time) bool
	Stats() abuse.Stats
	Config() abuse.Config
}

// StatusJSON is GET /v1/status.
type StatusJSON struct {
	Version       string          `json:"version"`
	Started       time.Time       `json:"started"`
	UptimeSeconds int64           `json:"uptime_seconds"`
	BruteForce    *BruteForceJSON `json:"bruteforce,omitempty"`

	Doors    []DoorJSON          `json:"doors,omitempty"`
	Permits  *int                `json:"permits,omitempty"` // active relay permits; absent when relay permits are off
	Firewall *FirewallStatusJSON `json:"firewall,omitempty"`
	GeoIP    *GeoIPJSON          `json:"geoip,omitempty"`
	DNSBL    *DNSBLStatusJSON    `json:"dnsbl,omitempty"`
	// DNSBLServer is the [dnsbl_server] listener; absent when it is off.
	DNSBLServer *DNSBLServerJSON `json:"dnsbl_server,omitempty"`
	Cluster     *ClusterJSON     `json:"cluster,omitempty"` // absent when [cluster] is off
	Logs        []LogSourceJSON  `json:"logs,omitempty"`    // the log door's sources
	Errors      []LogErrorJSON   `json:"errors"`            // the last error log records, oldest first

	// RuleSync is the PostgreSQL store's rule sync; absent on SQLite.
	RuleSync *RuleSyncJSON `json:"rule_sync,omitempty"`
}

// DoorJSON is one listener of a door, with the door's traffic: requests
// are verdicts, refusals the verdicts that refused (decision=deny).
type DoorJSON struct {
	Door           string `json:"door"`
	Listener       string `json:"listener"` // e.g. dovecot, postfix-socketmap_listen
	Listen         string `json:"listen"`
	Up             bool   `json:"up"`
	MinuteRequests uint64 `json:"requests_last_minute"`
	MinuteRefusals uint64 `json:"refusals_last_minute"`
	HourRequests   uint64 `json:"requests_last_hour"`
	HourRefusals   uint64 `json:"refusals_last_hour"`
}

// LogSourceJSON is one source of the log door: a file or the journal.
type LogSourceJSON struct {
	Source string `json:"source"` // the file's path, or journald
	Kind   string `json:"kind"`   // file or journald
	State  string `json:"state"`  // ok, lagging, stuck, missing, restarting, starting
	// Problem says why the source is stopped or lagging; "" when it is
	// read as it should be.
	Problem         string    `json:"problem,omitempty"`
	Lines           uint64    `json:"lines"`      // lines read
	Events          uint64    `json:"events"`     // login outcomes counted
	Other           uint64    `json:"other"`      // lines that are not login outcomes
	Skipped         uint64    `json:"skipped"`    // outcomes of programs or services another door reports
	Stale           uint64    `json:"stale"`      // outcomes older than logs.max_age
	LongLines       uint64    `json:"long_lines"` // lines longer than logs.max_line, skipped
	Rotations       uint64    `json:"rotations,omitempty"`
	Truncations     uint64    `json:"truncations,omitempty"`
	Offset          int64     `json:"offset,omitempty"`
	LagBytes        int64     `json:"lag_bytes,omitempty"`
	PID             int       `json:"pid,omitempty"`    // journalctl's
	Starts          uint64    `json:"starts,omitempty"` // journalctl processes started
	LastLine        time.Time `json:"last_line,omitzero"`
	LastLineSeconds int64     `json:"last_line_seconds,omitempty"`
}

// FirewallStatusJSON is the firewall's mode and whether the kernel's
// ruleset differs from the one mailgate wants.
type FirewallStatusJSON struct {
	Mode       string `json:"mode"`
	InSync     bool   `json:"in_sync"`
	DriftLines int    `json:"drift_lines"` // lines 'mailgate firewall show' marks + or -
	Error      string `json:"error,omitempty"`
}

// DNSBLServerJSON is the DNSBL listener: its zone and the queries it
// answered since start, by answer (listed, not_listed, apex, refused,
// malformed, rate_limited).
type DNSBLServerJSON struct {
	Listen   string            `json:"listen"`
	Zone     string            `json:"zone"`
	Queries  uint64            `json:"queries"`
	Answers  map[string]uint64 `json:"answers"`
	Autobans *int              `json:"kernel_autobans,omitempty"` // the kernel's autobans listed; absent without the firewall
}

// GeoIPJSON is the loaded GeoIP database.
type GeoIPJSON struct {
	Path          string    `json:"path"`
	Type          string    `json:"type"`
	Built         time.Time `json:"built"`
	Loaded        time.Time `json:"loaded"`
	AgeSeconds    int64     `json:"age_seconds"` // since Built
	LoadedSeconds int64     `json:"loaded_seconds_ago"`
}

// DNSBLStatusJSON is the DNS blocklist client's state: the zones' last
// health check, the cache and the counters since the start.
type DNSBLStatusJSON struct {
	Resolver     string            `json:"resolver"`
	Zones        []DNSBLHealthJSON `json:"zones"`
	CacheEntries int               `json:"cache_entries"`
	CacheHits    uint64            `json:"cache_hits"`
	CacheMisses  uint64            `json:"cache_misses"`
	Queries      uint64            `json:"queries"`
	Errors       uint64            `json:"errors"`
	Refused      uint64            `json:"refused"` // 127.255.255.x answers
}

// DNSBLHealthJSON is one zone's last health check (127.0.0.2 listed,
// 127.0.0.1 not); Checked is zero before the first.
type DNSBLHealthJSON struct {
	Zone    string    `json:"zone"`
	Spec    string    `json:"spec"`
	OK      bool      `json:"ok"`
	Problem string    `json:"problem,omitempty"`
	Checked time.Time `json:"checked,omitzero"`
}

// LogErrorJSON is one error log record.
type LogErrorJSON struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"` // the message and its attributes, key=value
}

// BruteForceJSON is the brute-force tracker's part of the status.
type BruteForceJSON struct {
	Addresses   int          `json:"tracked_addresses"`
	Logins      int          `json:"tracked_logins"`
	Pairs       int          `json:"tracked_pairs"`
	KnownGood   int          `json:"known_good"`
	Stale       int          `json:"stale_clients"`
	AddrBans    int          `json:"address_bans"`
	LoginBans   int          `json:"login_bans"`
	Rules       []WindowJSON `json:"rules"`
	UnderAttack AttackJSON   `json:"under_attack"`
}

// WindowJSON is one counting rule: so many failures within a window ban
// for a while.
type WindowJSON struct {
	Rule          string `json:"rule"` // the ban reason it writes
	Counts        string `json:"counts"`
	Failures      int    `json:"failures"`
	Window        string `json:"window"`
	WindowSeconds int64  `json:"window_seconds"`
	Ban           string `json:"ban"`
	BanSeconds    int64  `json:"ban_seconds"`
}

func windows(c abuse.Config) []WindowJSON {
	var out []WindowJSON
	add := func(rule, counts string, failures int, window, ban time.Duration) {
		if failures > 0 {
			out = append(out, WindowJSON{Rule: rule, Counts: counts, Failures: failures,
				Window: window.String(), WindowSeconds: int64(window / time.Second), Ban: ban.String(), BanSeconds: int64(ban / time.Second)})
		}
	}
	add(abuse.ReasonAddrFailures, "failures from one address", c.AddrFailures, c.AddrWindow, c.AddrBan)
	add(abuse.ReasonAddrHour, "failures from one address", c.AddrHourFailures, c.HourWindow, c.AddrHourBan)
	add(abuse.ReasonAddrDay, "failures from one address", c.AddrDayFailures, c.DayWindow, c.AddrDayBan)
	add(abuse.ReasonLoginAttack, "failures of one login from 2+ addresses", c.LoginFailures, c.LoginWindow, c.LoginBan)
	add(abuse.ReasonLoginHour, "failures of one login from strangers", c.LoginHourFailures, c.HourWindow, c.LoginHourBan)
	add(abuse.ReasonLoginDay, "failures of one login from strangers", c.LoginDayFailures, c.DayWindow, c.LoginDayBan)
	add(abuse.ReasonSpray, "logins failing from one address", c.SprayLogins, c.SprayWindow, c.SprayBan)
	return out
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	out := StatusJSON{Version: s.version, Started: s.started.UTC(), UptimeSeconds: int64(now.Sub(s.started) / time.Second)}
	if s.bf != nil {
		st := s.bf.Stats()
		out.BruteForce = &BruteForceJSON{Addresses: st.Addrs, Logins: st.Logins, Pairs: st.Pairs, KnownGood: st.KnownGood,
			Stale: st.Stale, AddrBans: st.AddrBans, LoginBans: st.LoginBans,
			Rules: windows(s.bf.Config()), UnderAttack: fromSurge(s.bf.SurgeState(now))}
	}
	if s.fw != nil {
		fs := &FirewallStatusJSON{Mode: s.fwMode}
		if want, have, err := s.fw.Show(now); err != nil {
			fs.Error = oneLine(err.Error())
		} else {
			fs.DriftLines = driftLines(s.fwDiff(want, have))
			fs.InSync = fs.DriftLines == 0
		}
		out.Firewall = fs
	}
	if s.statusMore != nil {
		s.statusMore(now, &out)
	}
	if out.Errors == nil {
		out.Errors = []LogErrorJSON{}
	}
	writeJSON(w, http.StatusOK, out)
}

// driftLines counts the lines of a diff that add or remove.
func driftLines(diff string) int {
	n := 0
	for l := range strings.Lines(diff) {
		if strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-") {
			n++
		}
	}
	return n
}

// ClusterJSON is the node's link to the cluster ([cluster]): whether
// Redis answers, and the nodes it hears from.
type ClusterJSON struct {
	Node       string            `json:"node"`
	Redis      string            `json:"redis"`
	Up         bool              `json:"up"`
	Since      time.Time         `json:"since,omitzero"` // up last changed
	LastError  string            `json:"last_error,omitempty"`
	LastResync time.Time         `json:"last_resync,omitzero"`
	Resyncs    uint64            `json:"resyncs"`
	Published  uint64            `json:"events_published"`
	Received   uint64            `json:"messages_received"`
	Dropped    uint64            `json:"dropped"`
	Rejected   uint64            `json:"rejected"`
	Nodes      []ClusterNodeJSON `json:"nodes"`
}

// ClusterNodeJSON is one node as this node sees it: its last heartbeat in
// Redis, and the lag of the newest message from it (its send time to its
// arrival here, clock skew included).
type ClusterNodeJSON struct {
	Name                 string    `json:"name"`
	Self                 bool      `json:"self,omitempty"`
	Version              string    `json:"version,omitempty"`
	Started              time.Time `json:"started,omitzero"`
	LastBeat             time.Time `json:"last_beat,omitzero"`
	BeatAgeMillis        int64     `json:"beat_age_ms,omitempty"`
	LagMillis            int64     `json:"lag_ms,omitempty"`
	LastMessageAgeMillis int64     `json:"last_message_age_ms,omitempty"`
}
