package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"mailgate/internal/rules"
)

// RuleChannel is the PostgreSQL notification channel of rule changes.
// Every transaction that adds or removes rules sends one notice on it
// (pg_notify inside the transaction: it is delivered at commit, in
// commit order, and never for a rolled-back change).
const RuleChannel = "mailgate_rules"

// maxNotice bounds a notice's payload; PostgreSQL's own limit is 8000
// bytes.
const maxNotice = 7900

// maxNoticeRange bounds the ids one notice may announce as added; more
// (a bulk import) is sent as a resync.
const maxNoticeRange = 1 << 20

// RuleNotice is one rule change announced on RuleChannel, as JSON:
//
//	{"v":1,"node":"3f2a…","add":[101,250]}            rules 101 to 250 were added
//	{"v":1,"node":"3f2a…","del":[{"id":7,…}]}         rule 7 was removed
//	{"v":1,"node":"3f2a…","resync":true}              too much for one notice: reload all
//
// At (optional, "at") is the sender's clock when it wrote the change, in
// unix milliseconds: the receiver's lag is its clock at apply minus At
// (node clocks are assumed to be in step, e.g. by NTP). Older senders
// leave it out.
//
// Removed rules travel whole (what the index needs to find them: the rule
// is gone from the database); added ones as an id range the listener
// reads back. Node is the sender's random id, so a node skips its own.
type RuleNotice struct {
	V      int          `json:"v"`
	Node   string       `json:"node"`
	Add    []int64      `json:"add,omitempty"` // [first, last], inclusive
	Del    []noticeRule `json:"del,omitempty"`
	Resync bool         `json:"resync,omitempty"`
	At     int64        `json:"at,omitempty"`
}

// noticeRule is a removed rule in a notice: what Index.Remove needs.
type noticeRule struct {
	ID      int64  `json:"id"`
	Scope   string `json:"scope"`
	Account string `json:"account"`
	Service string `json:"service"`
	Action  string `json:"action"`
	Match   string `json:"match"`
	Expires int64  `json:"expires,omitempty"` // unix seconds
}

// NewNodeID returns a random node id for notices.
func NewNodeID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ParseRuleNotice parses and checks a notice payload. Removed rules come
// back as rules (validated as stored ones are read).
func ParseRuleNotice(payload string) (n RuleNotice, removed []rules.Rule, err error) {
	if len(payload) > 8000 {
		return n, nil, errors.New("rule notice: longer than 8000 bytes")
	}
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return n, nil, fmt.Errorf("rule notice: %w", err)
	}
	switch {
	case n.V != 1:
		return n, nil, fmt.Errorf("rule notice: version %d, this mailgate reads 1", n.V)
	case n.At < 0:
		return n, nil, fmt.Errorf("rule notice: bad time %d", n.At)
	case n.Node == "" || len(n.Node) > 64:
		return n, nil, errors.New("rule notice: no node id, or a long one")
	case n.Add != nil && (len(n.Add) != 2 || n.Add[0] <= 0 || n.Add[1] < n.Add[0] || n.Add[1]-n.Add[0] >= maxNoticeRange):
		return n, nil, fmt.Errorf("rule notice: bad id range %v", n.Add)
	}
	for _, d := range n.Del {
		r := rules.Rule{ID: d.ID, Account: d.Account}
		if d.ID <= 0 {
			return n, nil, fmt.Errorf("rule notice: bad rule id %d", d.ID)
		}
		if err := decodeRule(&r, d.Scope, d.Service, d.Action, d.Match); err != nil {
			return n, nil, fmt.Errorf("rule notice: rule %d: %w", d.ID, err)
		}
		if d.Expires != 0 {
			r.Expires = fromSeconds(d.Expires)
		}
		if err := r.Validate(); err != nil {
			return n, nil, fmt.Errorf("rule notice: rule %d: %w", d.ID, err)
		}
		removed = append(removed, r)
	}
	return n, removed, nil
}

// noticesFor builds the payloads announcing a change: one for the added
// id range, and the removed rules in as few notices as fit; a change too
// large for that is one resync notice.
func noticesFor(node string, at time.Time, first, last int64, removed []rules.Rule) []string {
	var out []string
	var ms int64
	if !at.IsZero() {
		ms = at.UnixMilli()
	}
	enc := func(n RuleNotice) string {
		n.At = ms
		b, _ := json.Marshal(n)
		return string(b)
	}
	if first > 0 {
		if last-first >= maxNoticeRange {
			return []string{enc(RuleNotice{V: 1, Node: node, Resync: true})}
		}
		out = append(out, enc(RuleNotice{V: 1, Node: node, Add: []int64{first, last}}))
	}
	cur := RuleNotice{V: 1, Node: node}
	size := len(enc(cur))
	for i := range removed {
		r := &removed[i]
		d := noticeRule{ID: r.ID, Scope: r.Scope.String(), Account: r.Account, Service: r.Service.String(),
			Action: r.Action.String(), Match: r.MatchString()}
		if !r.Expires.IsZero() {
			d.Expires = seconds(r.Expires)
		}
		b, _ := json.Marshal(d)
		if len(b)+1+size > maxNotice && len(cur.Del) > 0 {
			out = append(out, enc(cur))
			cur.Del, size = nil, len(enc(RuleNotice{V: 1, Node: node}))
		}
		cur.Del = append(cur.Del, d)
		size += len(b) + 1
		if len(out) > 100 {
			return []string{enc(RuleNotice{V: 1, Node: node, Resync: true})}
		}
	}
	if len(cur.Del) > 0 {
		out = append(out, enc(cur))
	}
	return out
}

// notify sends payloads on RuleChannel inside tx.
func notify(ctx context.Context, tx pgx.Tx, payloads []string) error {
	for _, p := range payloads {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, RuleChannel, p); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	return nil
}

// RuleSyncStatus is the state of a node's rule sync (ListenRules), for
// status and metrics.
type RuleSyncStatus struct {
	// Connected: the listening connection is up and the resync after its
	// connect is done; changes of other nodes arrive as they commit.
	Connected bool
	// Since is when it last connected (Connected) or lost the connection
	// or failed to connect (not Connected); zero before the first try.
	Since time.Time
	// Resyncs counts full reloads: one per (re)connect, one per notice
	// asking for it or unreadable.
	Resyncs int64
	// Notices counts other nodes' notices applied.
	Notices int64
	// LastNotice is when the last of them was applied; zero if none.
	LastNotice time.Time
	// Lag is the last applied notice's delay from its sender's commit to
	// this node's index (0 when the sender did not say when).
	Lag time.Duration
	// LastError is why the connection was last lost (never the DSN).
	LastError string
}

// ruleSync holds RuleSyncStatus for RuleSyncStatus(); ListenRules writes
// it.
type ruleSync struct {
	mu sync.Mutex
	st RuleSyncStatus
}

func (r *ruleSync) update(f func(*RuleSyncStatus)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}

// RuleSyncStatus returns the state of the rule sync.
func (s *Postgres) RuleSyncStatus() RuleSyncStatus {
	s.sync.mu.Lock()
	defer s.sync.mu.Unlock()
	return s.sync.st
}

// resync reloads every rule into sy and counts it.
func (s *Postgres) resync(ctx context.Context, sy RuleSyncer) error {
	if err := sy.Resync(ctx, time.Now()); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	s.sync.update(func(st *RuleSyncStatus) { st.Resyncs++ })
	return nil
}

// applied counts a notice of another node applied at now.
func (s *Postgres) applied(n *RuleNotice, now time.Time) {
	s.sync.update(func(st *RuleSyncStatus) {
		st.Notices++
		st.LastNotice = now
		st.Lag = 0
		if n.At > 0 {
			st.Lag = max(0, now.Sub(time.UnixMilli(n.At)))
		}
	})
}

// RuleSyncer is what ListenRules drives: the node's rule book.
type RuleSyncer interface {
	// Resync reloads every stored rule (after each (re)connect, and when
	// a notice asks for it).
	Resync(ctx context.Context, now time.Time) error
	// Added and Removed apply another node's change; both must be
	// idempotent (a change may arrive after a resync that has it).
	Added(rs []rules.Rule)
	Removed(rs []rules.Rule)
}

// ListenRules keeps a connection of its own LISTENing on RuleChannel
// until ctx ends, applying other nodes' rule changes to sy as they
// commit. After every (re)connect it LISTENs first and then resyncs, so
// no change falls between the two. A lost connection is retried after
// retry (doubling up to 30 s); decisions meanwhile go on from memory.
func (s *Postgres) ListenRules(ctx context.Context, sy RuleSyncer, retry time.Duration, log *slog.Logger) {
	wait := retry
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, sy, func() { wait = retry }, log)
		if ctx.Err() != nil {
			return
		}
		s.sync.update(func(st *RuleSyncStatus) {
			if st.Connected || st.Since.IsZero() {
				st.Since = time.Now() // since it went down, not since the last retry
			}
			st.Connected, st.LastError = false, unreachableCause(err)
		})
		log.Warn("rule sync: lost the database; decisions go on from memory, retrying", "db", s.name, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (s *Postgres) listenOnce(ctx context.Context, sy RuleSyncer, connected func(), log *slog.Logger) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		// Bounded: a peer that vanished must not hold up shutdown.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(ctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+RuleChannel); err != nil {
		return err
	}
	if err := s.resync(ctx, sy); err != nil {
		return err
	}
	s.sync.update(func(st *RuleSyncStatus) { st.Connected, st.Since = true, time.Now() })
	connected()
	log.Info("rule sync: listening", "db", s.name, "channel", RuleChannel)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		notice, removed, err := ParseRuleNotice(n.Payload)
		if err != nil {
			log.Warn("rule sync: bad notice, resyncing", "err", err)
			if err := s.resync(ctx, sy); err != nil {
				return err
			}
			continue
		}
		if notice.Node == s.node {
			continue // this node applied it already
		}
		if notice.Resync {
			if err := s.resync(ctx, sy); err != nil {
				return err
			}
			s.applied(&notice, time.Now())
			continue
		}
		if len(removed) > 0 {
			// NOTIFY needs no privilege beyond connecting to the
			// database: a notice is a hint, the table is the truth. A
			// rule still stored is not taken out of memory.
			if removed, err = s.goneOnly(ctx, removed); err != nil {
				return fmt.Errorf("check removed rules: %w", err)
			}
			sy.Removed(removed)
		}
		if notice.Add != nil {
			rows, _ := s.pool.Query(ctx, `SELECT `+ruleColumns+` FROM rules WHERE id BETWEEN $1 AND $2 ORDER BY id`, notice.Add[0], notice.Add[1])
			rs, err := pgScanRules(rows)
			if err != nil {
				return fmt.Errorf("read added rules: %w", err)
			}
			sy.Added(rs)
		}
		s.applied(&notice, time.Now())
	}
}

// goneOnly returns the rules of rs that are not stored.
func (s *Postgres) goneOnly(ctx context.Context, rs []rules.Rule) ([]rules.Rule, error) {
	ids := make([]int64, len(rs))
	for i := range rs {
		ids[i] = rs[i].ID
	}
	rows, _ := s.pool.Query(ctx, `SELECT id FROM rules WHERE id = ANY($1)`, ids)
	stored, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, r := range rs {
		if !slices.Contains(stored, r.ID) {
			out = append(out, r)
		}
	}
	return out, nil
}
