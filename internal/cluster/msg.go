// Package cluster shares live state between mailgate nodes through Redis
// or Valkey: login results (so every node's brute-force windows count
// every node's failures), bans, ban removals, relay permits and firewall
// trust (which follow from successful logins). Decisions never wait on
// Redis: each node keeps its own state in memory, publishes what its
// doors saw in small batches, and applies what the others publish. When
// Redis is away, nodes go on alone and merge back when it returns.
package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"mailgate/internal/abuse"
	"mailgate/internal/store"
)

// Bounds on what a node accepts from Redis: a confused or hostile peer
// must not make a node allocate without end.
const (
	MaxMessage    = 512 << 10 // bytes of one published message
	MaxEvents     = 2000      // login results in one message
	MaxBans       = 1000      // bans in one message
	MaxUnbans     = 1000      // lifted bans in one message
	maxNodeLen    = 64
	maxStoredBan  = 4 << 10 // bytes of one ban kept in Redis
	maxStrField   = 320     // a login (abuse.MaxLoginLen)
	maxDoorLen    = 16
	maxDigestLen  = 16
	maxVersionLen = 64
)

// version of the message format.
const version = 1

// Message is what a node publishes on the cluster's channel.
type Message struct {
	V      int     `json:"v"`
	Node   string  `json:"node"`
	Sent   int64   `json:"t"` // Unix milliseconds at the sender
	Events []Event `json:"ev,omitempty"`
	Bans   []Ban   `json:"bans,omitempty"`
	Unbans []Unban `json:"unbans,omitempty"`
	// Permits are relay permits added by hand; Unpermits the networks
	// whose permits were withdrawn by hand. Permits that logins earn
	// follow from the login results.
	Permits   []Permit `json:"permits,omitempty"`
	Unpermits []string `json:"unpermits,omitempty"`
	// Rcpts are recipients the node's Postfix door accepted for an
	// authenticated sender: every node counts them against the sending
	// limits.
	Rcpts []Rcpt `json:"rcpts,omitempty"`
}

// Rcpt is one accepted recipient of an authenticated sender.
type Rcpt struct {
	Login    string `json:"l"`
	Instance string `json:"i,omitempty"` // Postfix's instance: one message's recipients count one message
}

// MaxRcpts bounds the recipients in one message.
const MaxRcpts = 2000

// Permit is a relay permit added by hand ('permit add').
type Permit struct {
	Prefix  string `json:"p"`
	Expires int64  `json:"e"` // Unix seconds
	Comment string `json:"m,omitempty"`
	By      string `json:"by,omitempty"`
}

// MaxPermits bounds the permits and withdrawn permits in one message.
const MaxPermits = 1000

// Event is one login result a door saw (or a post-login hook's report).
type Event struct {
	Login   string     `json:"l,omitempty"`
	Addr    netip.Addr `json:"a"`
	PwHash  string     `json:"h,omitempty"` // Digest of the door's password hash
	Success bool       `json:"s,omitempty"`
	Service string     `json:"svc,omitempty"`
	Door    string     `json:"d,omitempty"`
	Hook    bool       `json:"hook,omitempty"` // a post-login hook's report: permits and trust only
}

// Ban is an abuse.Ban on the wire (and in Redis).
type Ban struct {
	ID        int64  `json:"id"`
	Kind      string `json:"k"` // addr or login
	Target    string `json:"x"` // the prefix, or the login
	Reason    string `json:"r"`
	Created   int64  `json:"c"`           // Unix seconds
	Expires   int64  `json:"e,omitempty"` // Unix seconds; 0: no end
	Comment   string `json:"m,omitempty"`
	CreatedBy string `json:"by,omitempty"`
}

// Unban is a lifted ban: its ID and target, and when it was lifted.
type Unban struct {
	ID     int64  `json:"id"`
	Kind   string `json:"k"`
	Target string `json:"x"`
	At     int64  `json:"at"` // Unix seconds
}

// Digest is what a node publishes of a door's password hash: enough to
// tell a stale client's repeated password from new guesses, and nothing
// that the door's own hash would not already hide.
func Digest(pwhash string) string {
	if pwhash == "" {
		return ""
	}
	// Every decision computes it (policy.Engine.WithPwDigest): the input
	// is built on the stack, the result is the one allocation.
	var buf [64]byte
	s := sha256.Sum256(append(append(buf[:0], "mailgate-cluster-pw\x00"...), pwhash...))
	var out [12]byte
	hex.Encode(out[:], s[:6])
	return string(out[:])
}

// FromBan converts a tracker's ban for the wire.
func FromBan(b *abuse.Ban) Ban {
	w := Ban{ID: b.ID, Reason: b.Reason, Created: b.Created.Unix(), Comment: b.Comment, CreatedBy: b.CreatedBy}
	if b.Kind == abuse.BanLogin {
		w.Kind, w.Target = "login", b.Login
	} else {
		w.Kind, w.Target = "addr", b.Prefix.String()
	}
	if !b.Expires.IsZero() {
		w.Expires = b.Expires.Unix()
	}
	return w
}

// target parses a wire kind and target into a Ban's Kind and Prefix or
// Login.
func target(kind, x string) (abuse.Ban, error) {
	var b abuse.Ban
	switch kind {
	case "addr":
		p, err := netip.ParsePrefix(x)
		if err != nil {
			return b, fmt.Errorf("address ban: %q is not a network", x)
		}
		b.Kind, b.Prefix = abuse.BanAddr, p
	case "login":
		if x == "" || len(x) > maxStrField || !utf8.ValidString(x) {
			return b, errors.New("login ban: bad login")
		}
		b.Kind, b.Login = abuse.BanLogin, x
	default:
		return b, fmt.Errorf("ban of unknown kind %q", kind)
	}
	return b, nil
}

// ToBan converts a wire ban and checks it as the store checks a ban it
// reads back.
func (w *Ban) ToBan() (abuse.Ban, error) {
	b, err := target(w.Kind, w.Target)
	if err != nil {
		return b, err
	}
	if w.Created <= 0 || w.Expires < 0 || (w.Expires != 0 && w.Expires <= w.Created) {
		return b, fmt.Errorf("ban %d: bad times", w.ID)
	}
	b.ID, b.Reason, b.Comment, b.CreatedBy = w.ID, w.Reason, w.Comment, w.CreatedBy
	b.Created = time.Unix(w.Created, 0).UTC()
	if w.Expires != 0 {
		b.Expires = time.Unix(w.Expires, 0).UTC()
	}
	if err := store.CheckBan(&b); err != nil {
		return b, err
	}
	if b.Reason == "" {
		return b, fmt.Errorf("ban %d: no reason", b.ID)
	}
	return b, nil
}

// Target returns the unban's target as a Ban's Kind and Prefix or Login.
func (u *Unban) target() (abuse.Ban, error) { return target(u.Kind, u.Target) }

// Encode marshals m; it fails when the result is over MaxMessage.
func Encode(m *Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("message of %d bytes is over %d", len(b), MaxMessage)
	}
	return b, nil
}

// Parse reads a message another node published. Anything out of bounds,
// unknown or inconsistent is an error and nothing of the message is
// applied.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxMessage {
		return m, fmt.Errorf("message of %d bytes is over %d", len(b), MaxMessage)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("not a cluster message: %w", err)
	}
	if d.More() {
		return Message{}, errors.New("not a cluster message: trailing data")
	}
	if err := m.check(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func (m *Message) check() error {
	switch {
	case m.V != version:
		return fmt.Errorf("message version %d (want %d)", m.V, version)
	case !validNode(m.Node):
		return errors.New("message without a valid node name")
	case m.Sent <= 0:
		return errors.New("message without a time")
	case len(m.Events) > MaxEvents:
		return fmt.Errorf("%d events in one message (at most %d)", len(m.Events), MaxEvents)
	case len(m.Bans) > MaxBans:
		return fmt.Errorf("%d bans in one message (at most %d)", len(m.Bans), MaxBans)
	case len(m.Unbans) > MaxUnbans:
		return fmt.Errorf("%d lifted bans in one message (at most %d)", len(m.Unbans), MaxUnbans)
	}
	for i := range m.Events {
		e := &m.Events[i]
		switch {
		case !e.Addr.IsValid() || e.Addr.Zone() != "":
			return fmt.Errorf("event %d: no valid address", i)
		case len(e.Login) > maxStrField || !utf8.ValidString(e.Login):
			return fmt.Errorf("event %d: bad login", i)
		case len(e.PwHash) > maxDigestLen, len(e.Door) > maxDoorLen, len(e.Service) > maxDoorLen:
			return fmt.Errorf("event %d: field too long", i)
		}
		e.Addr = e.Addr.Unmap()
	}
	for i := range m.Bans {
		if _, err := m.Bans[i].ToBan(); err != nil {
			return fmt.Errorf("ban %d of the message: %w", i, err)
		}
	}
	if len(m.Permits) > MaxPermits || len(m.Unpermits) > MaxPermits {
		return fmt.Errorf("more than %d permits in one message", MaxPermits)
	}
	for i := range m.Permits {
		p := &m.Permits[i]
		if _, err := netip.ParsePrefix(p.Prefix); err != nil {
			return fmt.Errorf("permit %d of the message: %q is not a network", i, p.Prefix)
		}
		if p.Expires <= 0 || len(p.Comment) > 1024 || len(p.By) > 256 || !utf8.ValidString(p.Comment) || !utf8.ValidString(p.By) {
			return fmt.Errorf("permit %d of the message: bad fields", i)
		}
	}
	if len(m.Rcpts) > MaxRcpts {
		return fmt.Errorf("%d recipients in one message (at most %d)", len(m.Rcpts), MaxRcpts)
	}
	for i, r := range m.Rcpts {
		if r.Login == "" || len(r.Login) > maxStrField || len(r.Instance) > 64 || !utf8.ValidString(r.Login) || !utf8.ValidString(r.Instance) {
			return fmt.Errorf("recipient %d of the message: bad fields", i)
		}
	}
	for i, x := range m.Unpermits {
		if _, err := netip.ParsePrefix(x); err != nil {
			return fmt.Errorf("withdrawn permit %d of the message: %q is not a network", i, x)
		}
	}
	for i := range m.Unbans {
		u := &m.Unbans[i]
		if u.ID <= 0 || u.At <= 0 {
			return fmt.Errorf("lifted ban %d of the message: no id or time", i)
		}
		if _, err := u.target(); err != nil {
			return fmt.Errorf("lifted ban %d of the message: %w", i, err)
		}
	}
	return nil
}

// ParseBan reads a ban kept in Redis.
func ParseBan(b []byte) (abuse.Ban, error) {
	if len(b) > maxStoredBan {
		return abuse.Ban{}, fmt.Errorf("stored ban of %d bytes is over %d", len(b), maxStoredBan)
	}
	var w Ban
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return abuse.Ban{}, fmt.Errorf("not a stored ban: %w", err)
	}
	return w.ToBan()
}

// Beat is a node's heartbeat, kept in Redis with a TTL.
type Beat struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	Started int64  `json:"started"` // Unix seconds
	Beat    int64  `json:"beat"`    // Unix milliseconds
}

// ParseBeat reads a heartbeat kept in Redis.
func ParseBeat(b []byte) (Beat, error) {
	var h Beat
	if len(b) > 1024 {
		return h, errors.New("heartbeat over 1024 bytes")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return Beat{}, fmt.Errorf("not a heartbeat: %w", err)
	}
	if !validNode(h.Node) || !printable(h.Version, maxVersionLen) || h.Beat <= 0 {
		return Beat{}, errors.New("not a heartbeat: bad fields")
	}
	return h, nil
}

// printable reports whether s is valid UTF-8 of at most max bytes without
// control characters: text 'mailgate status' prints to a terminal (an
// escape sequence in another node's version would reach it).
func printable(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
	}
	return true
}

func validNode(s string) bool {
	if s == "" || len(s) > maxNodeLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
