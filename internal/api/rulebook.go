package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// RuleStore is what the rulebook needs from persistence.
type RuleStore interface {
	AddRules(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error)
	DeleteRule(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error)
	Rules(ctx context.Context) ([]rules.Rule, error)
	Rule(ctx context.Context, id int64) (rules.Rule, error)
	DeleteExpired(ctx context.Context, now time.Time) ([]rules.Rule, error)
	Audit(ctx context.Context, limit int) ([]store.AuditEntry, error)
}

// Rulebook keeps the rule index in memory in step with the store: every
// change goes to disk first and reaches memory only when disk took it.
type Rulebook struct {
	mu    sync.Mutex // serializes changes so disk and memory see one order
	store RuleStore
	idx   *rules.Index
	fixed []rules.Rule // rules from the config file, never stored
}

// NewRulebook returns a rulebook over st and idx. fixed are the config
// file's rules (trusted and deny networks); they are put in the index on
// every Load and never stored.
func NewRulebook(st RuleStore, idx *rules.Index, fixed []rules.Rule) *Rulebook {
	return &Rulebook{store: st, idx: idx, fixed: fixed}
}

// Load replaces the index with the stored rules (those already expired at
// now are left out) and the config file's rules. It returns how many
// stored rules it loaded.
func (b *Rulebook) Load(ctx context.Context, now time.Time) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loadLocked(ctx, now)
}

func (b *Rulebook) loadLocked(ctx context.Context, now time.Time) (int, error) {
	rs, err := b.store.Rules(ctx)
	if err != nil {
		return 0, fmt.Errorf("loading rules: %w", err)
	}
	live := rs[:0]
	for _, r := range rs {
		if !r.Expired(now) {
			live = append(live, r)
		}
	}
	n := len(live)
	b.idx.Replace(append(live, b.fixed...))
	return n, nil
}

// SetFixed replaces the config file's rules (a reload): the index is
// rebuilt from the store and fixed in one swap, so a decision sees the
// old set or the new one. On an error nothing changes.
func (b *Rulebook) SetFixed(ctx context.Context, now time.Time, fixed []rules.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.fixed
	b.fixed = fixed
	if _, err := b.loadLocked(ctx, now); err != nil {
		b.fixed = old
		return err
	}
	return nil
}

// Add stores rs in one transaction, then puts them in the index.
func (b *Rulebook) Add(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	added, err := b.store.AddRules(ctx, now, actor, rs)
	if err != nil {
		return nil, err
	}
	for i := range added {
		b.idx.Add(&added[i])
	}
	return added, nil
}

// Remove deletes rule id from the store, then from the index.
func (b *Rulebook) Remove(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.store.DeleteRule(ctx, now, actor, id)
	if err != nil {
		return r, err
	}
	b.idx.Remove(&r)
	return r, nil
}

// Expire removes the rules expired at now from the store and the index.
func (b *Rulebook) Expire(ctx context.Context, now time.Time) ([]rules.Rule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gone, err := b.store.DeleteExpired(ctx, now)
	for i := range gone {
		b.idx.Remove(&gone[i])
	}
	return gone, err
}

// List returns the stored rules followed by the config file's.
func (b *Rulebook) List(ctx context.Context) ([]rules.Rule, error) {
	rs, err := b.store.Rules(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	fixed := b.fixed
	b.mu.Unlock()
	return append(rs, fixed...), nil
}

// Get returns stored rule id.
func (b *Rulebook) Get(ctx context.Context, id int64) (rules.Rule, bool) {
	r, err := b.store.Rule(ctx, id)
	return r, err == nil
}

// Resync reloads every stored rule into the index (store.RuleSyncer: a
// node's rule sync after each reconnect to a shared store).
func (b *Rulebook) Resync(ctx context.Context, now time.Time) error {
	_, err := b.Load(ctx, now)
	return err
}

// Added puts rules another node stored into the index. A rule already
// there (a resync had it) is replaced, not doubled.
func (b *Rulebook) Added(rs []rules.Rule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range rs {
		b.idx.Remove(&rs[i])
		b.idx.Add(&rs[i])
	}
}

// Removed takes rules another node removed out of the index; one not
// there is skipped.
func (b *Rulebook) Removed(rs []rules.Rule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range rs {
		b.idx.Remove(&rs[i])
	}
}
