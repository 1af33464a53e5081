package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"mailgate/internal/config"
	"mailgate/internal/nginxauth"
	"mailgate/internal/password"
	"mailgate/internal/postfix"
	"mailgate/internal/store"
)

// pwState is the password policy of a running daemon: the checker the
// doors and the API share, the API's rate limit, and the weak-password
// flags (nil unless password.check_at_login) written behind to the store.
type pwState struct {
	checker *password.Checker
	limit   *password.Limiter
	flags   *password.Flags // nil: check_at_login is off
	st      store.Backend
	log     *slog.Logger
	// weakDays is password.weak_days: a reload writes it while the admin
	// API and the prune in run read it.
	weakDays atomic.Int64
}

// flushEvery is how often flag changes are written to the store.
const flushEvery = 5 * time.Second

// policyOf builds a policy from the config, opening the breached list.
func policyOf(c config.Password) (password.Policy, error) {
	p := password.Policy{MinLength: c.MinLength, MinClasses: c.MinClasses, MinScore: c.MinScore}
	if c.BreachedFile != "" {
		b, err := password.OpenBreached(c.BreachedFile)
		if err != nil {
			return p, fmt.Errorf("password.breached_file: %w", err)
		}
		p.Breached = b
	}
	return p, nil
}

// loadPolicy is the [password] policy of the config file at path (""
// is the default path, or the built-in defaults): the CLI's password
// commands run it without a daemon. The caller closes its breached list.
func loadPolicy(path string) (password.Policy, error) {
	cfg, _, err := config.LoadOrDefault(path)
	if err != nil {
		return password.Policy{}, err
	}
	return policyOf(cfg.Password)
}

func newPwState(ctx context.Context, c config.Password, st store.Backend, now time.Time, log *slog.Logger) (*pwState, error) {
	p, err := policyOf(c)
	if err != nil {
		return nil, err
	}
	s := &pwState{checker: password.NewChecker(p), limit: password.NewLimiter(c.CheckRate), st: st, log: log}
	s.weakDays.Store(int64(c.WeakDays))
	if p.Breached != nil {
		log.Info("breached-password list opened", "file", c.BreachedFile, "bytes", p.Breached.Size())
	}
	if c.CheckAtLogin {
		keep := time.Duration(c.WeakDays) * 24 * time.Hour
		s.flags = password.NewFlags(keep, 0, func(ctx context.Context, ss []password.Seen) error {
			ws := make([]store.WeakLogin, len(ss))
			for i, x := range ss {
				ws[i] = store.WeakLogin{Login: x.Login, Seen: x.At}
			}
			return st.SaveWeak(ctx, ws)
		})
		ws, err := st.WeakLogins(ctx, now.Add(-keep))
		if err != nil && ws == nil {
			return nil, fmt.Errorf("loading weak-password logins: %w", err)
		} else if err != nil {
			log.Warn("weak-password logins: some stored rows were skipped", "err", err)
		}
		ss := make([]password.Seen, len(ws))
		for i, w := range ws {
			ss[i] = password.Seen{Login: w.Login, At: w.Seen}
		}
		s.flags.Load(ss)
		log.Info("weak-password flags loaded", "logins", len(ss), "weak_days", c.WeakDays)
	}
	return s, nil
}

// run writes flag changes behind until ctx ends, then a last time, and
// forgets stored flags older than weak_days once an hour.
func (s *pwState) run(ctx context.Context) {
	if s.flags == nil {
		return
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.flags.Flush(fctx); err != nil {
				s.log.Error("writing weak-password flags at shutdown", "kind", "store", "err", err)
			}
			cancel()
			return
		case now := <-t.C:
			if err := s.flags.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("writing weak-password flags; retrying", "kind", "store", "err", err)
			}
			if now.Sub(lastPrune) >= time.Hour {
				lastPrune = now
				if _, err := s.st.DeleteWeakBefore(ctx, now.Add(-time.Duration(s.days())*24*time.Hour)); err != nil && ctx.Err() == nil {
					s.log.Error("pruning weak-password flags", "kind", "store", "err", err)
				}
			}
		}
	}
}

// reconfigure applies a reloaded [password] (see reloadTable); p is the
// policy prepared by policyOf.
func (s *pwState) reconfigure(c config.Password, p password.Policy) {
	old := s.checker.Set(p)
	if old != nil && old.Breached != nil && old.Breached != p.Breached {
		// Checks that loaded the old policy finish long before.
		password.CloseLater(old.Breached, time.Minute)
	}
	s.limit.SetRate(c.CheckRate)
	if s.flags != nil {
		s.flags.SetKeep(time.Duration(c.WeakDays) * 24 * time.Hour)
	}
	s.weakDays.Store(int64(c.WeakDays))
}

// days is the weak_days in force.
func (s *pwState) days() int { return int(s.weakDays.Load()) }

// loginCheck is the nginx door's policy check; nil when check_at_login
// is off.
func (s *pwState) loginCheck() nginxauthPolicy {
	if s.flags == nil {
		return nil
	}
	return s.checker
}

// loginFlags is where the nginx door marks weak logins; nil when off.
func (s *pwState) loginFlags() nginxauthFlags {
	if s.flags == nil {
		return nil
	}
	return s.flags
}

// refuseWeak is the Postfix door's weak-login check; nil unless
// refuse_weak_submission.
func (s *pwState) refuseWeak(on bool) postfixWeak {
	if !on || s.flags == nil {
		return nil
	}
	return s.flags
}

type (
	nginxauthPolicy = nginxauth.PasswordPolicy
	nginxauthFlags  = nginxauth.WeakFlags
	postfixWeak     = postfix.WeakLogins
)
