package store

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"mailgate/internal/abuse"
	"mailgate/internal/relay"
)

// BadRows is the error of a reader of live state (Bans, KnownGood,
// Permits, Trusted) that skipped stored rows it could not read back. The
// rows returned with it are good: one bad row must never stop mailgate
// from starting. Test with errors.As and log Errs.
type BadRows struct {
	Table string
	Errs  []error // one per skipped row
}

func (e *BadRows) Error() string {
	return fmt.Sprintf("%s: %d stored rows skipped: %v", e.Table, len(e.Errs), e.Errs[0])
}

// badRows returns nil or a *BadRows for errs.
func badRows(table string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &BadRows{Table: table, Errs: errs}
}

// maxBadRows bounds the errors kept per read.
const maxBadRows = 100

// addBad appends err to errs, keeping at most maxBadRows of them (the
// last one counts the rest).
func addBad(errs []error, err error) []error {
	switch {
	case len(errs) < maxBadRows:
		return append(errs, err)
	case len(errs) == maxBadRows:
		return append(errs, errors.New("more bad rows"))
	}
	return errs
}

// CheckBan reports why a ban could not be stored and read back into the
// tracker (a ban the tracker refuses at start).
func CheckBan(b *abuse.Ban) error {
	if b.ID <= 0 {
		return fmt.Errorf("ban %d: no id", b.ID)
	}
	if err := abuse.CheckBan(*b, b.Created); err != nil {
		return fmt.Errorf("ban %d: %w", b.ID, err)
	}
	if err := checkText("created_by", b.CreatedBy, MaxActorLen); err != nil {
		return fmt.Errorf("ban %d: %w", b.ID, err)
	}
	return nil
}

// CheckKnownGood reports why a known-good pair could not be stored and
// read back.
func CheckKnownGood(k *abuse.KnownGood) error {
	switch {
	case !k.Prefix.IsValid():
		return fmt.Errorf("known-good address for %.64q: no address", k.Login)
	case k.Login == "":
		return fmt.Errorf("known-good address %s: no login", k.Prefix)
	case len(k.Login) > abuse.MaxLoginLen:
		return fmt.Errorf("known-good address %s: login longer than %d bytes", k.Prefix, abuse.MaxLoginLen)
	case !utf8.ValidString(k.Login):
		return fmt.Errorf("known-good address %s: login not valid UTF-8", k.Prefix)
	}
	return nil
}

// CheckTrusted reports why a trusted address could not be stored.
func CheckTrusted(t *TrustedAddr) error {
	a := t.Addr.Unmap()
	switch {
	case !a.IsValid() || a.Zone() != "":
		return fmt.Errorf("trusted address %q: not an address", t.Addr)
	case len(t.Login) > MaxTrustedLoginLen:
		return fmt.Errorf("trusted address %s: login longer than %d bytes", a, MaxTrustedLoginLen)
	case t.Expires.IsZero():
		return fmt.Errorf("trusted address %s: no expiry", a)
	}
	return nil
}

// CheckPermit reports why a relay permit could not be stored and read
// back.
func CheckPermit(p *relay.Permit) error { return checkPermit(p) }
