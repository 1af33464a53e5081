package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"mailgate/internal/abuse"
)

// Options configure a node's link to Redis.
type Options struct {
	Addr     string // host:port
	Username string
	Password string // never logged
	DB       int
	TLS      *tls.Config // nil: plain TCP

	DialTimeout time.Duration
	Timeout     time.Duration // one Redis operation

	Node    string // this node's name
	Prefix  string // of every key and the channel
	Version string // mailgate's, shown in other nodes' status
	Started time.Time

	FlushEvery time.Duration // how often queued events are published; 0: 50 ms
	BeatEvery  time.Duration // heartbeats and ID refills; 0: 2 s
}

// Hooks are what a node does with what other nodes publish. They run on
// the node's applying goroutine, one at a time.
type Hooks struct {
	// Event is a login result another node's door saw.
	Event func(ev Event, now time.Time)
	// BansChanged tells what merging did to the tracker: bans added
	// (made on other nodes) and lifted (lifted on other nodes, or
	// replaced by another node's copy with a smaller ID).
	BansChanged func(added, removed []abuse.Ban, now time.Time)
	// Permits are relay permits added and withdrawn by hand on another
	// node (the relay table checks them as it checks a local one).
	Permits func(added []Permit, removed []netip.Prefix, now time.Time)
	// Rcpts are recipients another node's Postfix door accepted, for the
	// sending limits.
	Rcpts func(rs []Rcpt, now time.Time)
}

// Limits of what a node queues while it cannot publish.
const (
	maxQueuedEvents = 10000
	idBlock         = 256                 // IDs reserved from Redis at a time
	fallbackBase    = int64(1) << 52      // IDs made without Redis start here
	tombFloor       = time.Hour           // a lifted ban's tombstone lasts at least this
	tombForever     = 30 * 24 * time.Hour // ... and this for a ban without end
	maxNodes        = 256                 // nodes listed in status
	forgetPeer      = time.Minute         // a node without heartbeat leaves status this long after its last message
	inboxLen        = 256                 // messages waiting to be applied (at most MaxMessage each)
)

// Node is one mailgate's link to the cluster.
type Node struct {
	opt   Options
	t     *abuse.Tracker
	hooks Hooks
	log   *slog.Logger
	now   func() time.Time

	channel string

	up       atomic.Bool
	resyncCh chan struct{}
	kick     chan struct{}
	urgent   chan struct{} // a ban, lift or permit to publish now
	inbox    chan string

	published, received, dropped, rejected, resyncs atomic.Uint64

	mu         sync.Mutex
	events     []Event
	bans       []Ban
	unbans     []Unban
	permits    []Permit
	rcpts      []Rcpt
	forget     []int64 // bans replaced by a copy with a smaller ID: their keys go
	unpermits  []string
	tombs      map[int64]tomb
	peers      map[string]*peer
	since      time.Time // up changed
	lastSync   time.Time
	lastError  string
	ids        idPool
	twinWarned bool
	epoch      string // Redis's, from the last merge
}

type tomb struct {
	u     Unban
	until time.Time
}

type peer struct {
	beat     Beat
	beatSeen bool
	lastMsg  time.Time // when the newest message from it arrived
	lag      time.Duration
}

// idPool hands out ban IDs reserved from Redis's counter, and IDs in a
// node-specific range when none are left (Redis away since start).
type idPool struct {
	next, end int64
	fbNode    int64 // fallbackBase | node hash << 40
	fbLast    int64
}

// New returns a node; Run connects it.
func New(opt Options, t *abuse.Tracker, hooks Hooks, log *slog.Logger) *Node {
	if opt.FlushEvery <= 0 {
		opt.FlushEvery = 50 * time.Millisecond
	}
	if opt.BeatEvery <= 0 {
		opt.BeatEvery = 2 * time.Second
	}
	h := fnv.New32a()
	h.Write([]byte(opt.Node))
	n := &Node{
		opt: opt, t: t, hooks: hooks, log: log, now: time.Now,
		channel:  opt.Prefix + "bus",
		resyncCh: make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		urgent:   make(chan struct{}, 1),
		inbox:    make(chan string, inboxLen),
		tombs:    map[int64]tomb{},
		peers:    map[string]*peer{},
		since:    opt.Started,
	}
	n.ids.fbNode = fallbackBase | int64(h.Sum32()&0xfff)<<40
	t.SetIDSource(n.nextID)
	return n
}

// nextID is the tracker's ID source: called with the tracker's lock held.
func (n *Node) nextID() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := &n.ids
	if p.next < p.end {
		id := p.next
		p.next++
		if p.end-p.next < idBlock/4 {
			n.signal(n.kick)
		}
		return id
	}
	n.signal(n.kick)
	ms := n.now().UnixMilli() & (1<<40 - 1)
	p.fbLast = max(p.fbLast+1, ms)
	return p.fbNode | p.fbLast&(1<<40-1)
}

func (n *Node) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Event queues a login result this node's doors saw, for the others.
func (n *Node) Event(ev Event) {
	if len(ev.PwHash) > maxDigestLen {
		ev.PwHash = ev.PwHash[:maxDigestLen]
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.events) >= maxQueuedEvents {
		n.dropped.Add(1)
		return
	}
	n.events = append(n.events, ev)
}

// Banned queues bans this node made (automatic or by hand) for the
// others and for Redis.
func (n *Node) Banned(bs []abuse.Ban) {
	if len(bs) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range bs {
		n.bans = append(n.bans, FromBan(&bs[i]))
	}
	n.signal(n.urgent)
}

// Lifted queues bans lifted on this node ('ban rm') for the others and
// remembers a tombstone for each, so that no node or Redis brings them
// back after an outage.
func (n *Node) Lifted(bs []abuse.Ban, now time.Time) {
	if len(bs) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range bs {
		w := FromBan(&bs[i])
		u := Unban{ID: w.ID, Kind: w.Kind, Target: w.Target, At: now.Unix()}
		n.unbans = append(n.unbans, u)
		n.tombs[u.ID] = tomb{u: u, until: tombUntil(&bs[i], now)}
	}
	n.signal(n.urgent)
}

func tombUntil(b *abuse.Ban, now time.Time) time.Time {
	if b.Expires.IsZero() {
		return now.Add(tombForever)
	}
	return maxTime(b.Expires, now).Add(tombFloor)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Rcpt queues a recipient this node's Postfix door accepted for an
// authenticated sender, for the other nodes' sending limits.
func (n *Node) Rcpt(login, instance string) {
	if len(login) > maxStrField || len(instance) > 64 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.rcpts) >= maxQueuedEvents {
		n.dropped.Add(1)
		return
	}
	n.rcpts = append(n.rcpts, Rcpt{Login: login, Instance: instance})
}

// PermitsChanged queues relay permits added and withdrawn by hand on
// this node, for the others.
func (n *Node) PermitsChanged(added []Permit, removed []netip.Prefix) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.permits = append(n.permits, added...)
	for _, p := range removed {
		n.unpermits = append(n.unpermits, p.String())
	}
	n.signal(n.urgent)
}

// Up reports whether Redis answered the last operation.
func (n *Node) Up() bool { return n.up.Load() }

func (n *Node) key(parts ...string) string { return n.opt.Prefix + strings.Join(parts, ":") }

func (n *Node) setUp(up bool, err error) {
	was := n.up.Swap(up)
	n.mu.Lock()
	newErr := false
	if err != nil {
		msg := oneLine(err.Error())
		newErr = msg != n.lastError
		n.lastError = msg
	}
	if was != up {
		n.since = n.now()
	}
	n.mu.Unlock()
	switch {
	case was && !up:
		n.log.Warn("cluster: lost Redis; deciding on this node's own state until it returns", "redis", n.opt.Addr, "err", err)
	case !was && up:
		n.log.Info("cluster: Redis reached; merging state", "redis", n.opt.Addr, "node", n.opt.Node)
	case !up && newErr:
		// Still away, for another reason (or since the start): said
		// once per reason, not at every retry.
		n.log.Warn("cluster: Redis unavailable; deciding on this node's own state", "redis", n.opt.Addr, "err", err)
	}
}

// oneLine makes an error text fit for one line of 'mailgate status' (a
// terminal): at most 200 bytes of valid UTF-8, control characters as
// spaces. The text may come from the Redis server.
func oneLine(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

// Run connects to Redis (again and again, with backoff, while it is
// away), publishes what is queued, applies what others publish and beats,
// until ctx ends. A node whose Redis is down at start runs all the same.
func (n *Node) Run(ctx context.Context) {
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		n.applyLoop(ctx)
	}()
	defer func() { <-applied }()
	backoff := 250 * time.Millisecond
	for {
		c, err := n.connect()
		if err != nil {
			n.setUp(false, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		began := time.Now()
		n.session(ctx, c)
		c.Close()
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = 250 * time.Millisecond // a session that held: start over
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) connect() (rueidis.Client, error) {
	o := rueidis.ClientOption{
		InitAddress:       []string{n.opt.Addr},
		Username:          n.opt.Username,
		Password:          n.opt.Password,
		SelectDB:          n.opt.DB,
		TLSConfig:         n.opt.TLS,
		Dialer:            net.Dialer{Timeout: n.opt.DialTimeout},
		ConnWriteTimeout:  n.opt.Timeout,
		DisableCache:      true,
		ForceSingleClient: true,
		ClientName:        "mailgate-" + n.opt.Node,
	}
	c, err := rueidis.NewClient(o)
	if err != nil {
		return nil, fmt.Errorf("connecting to Redis at %s: %w", n.opt.Addr, err)
	}
	return c, nil
}

// session runs on one client until ctx ends or the subscription fails
// for good. rueidis reconnects under it; every (re)subscription triggers
// a resync.
func (n *Node) session(ctx context.Context, c rueidis.Client) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvDone := make(chan error, 1)
	go func() {
		hook := rueidis.WithOnSubscriptionHook(sctx, func(s rueidis.PubSubSubscription) {
			if s.Kind == "subscribe" {
				n.signal(n.resyncCh)
			}
		})
		recvDone <- c.Receive(hook, c.B().Subscribe().Channel(n.channel).Build(), func(m rueidis.PubSubMessage) {
			if len(m.Message) > MaxMessage {
				n.rejected.Add(1)
				return
			}
			select {
			case n.inbox <- m.Message:
			default:
				n.dropped.Add(1)
			}
		})
	}()
	flush := time.NewTicker(n.opt.FlushEvery)
	defer flush.Stop()
	beat := time.NewTicker(n.opt.BeatEvery)
	defer beat.Stop()
	n.beat(ctx, c)
	for {
		select {
		case <-ctx.Done():
			n.flush(c) // what is queued, once more (bounded by Timeout)
			return
		case err := <-recvDone:
			if ctx.Err() == nil {
				n.setUp(false, fmt.Errorf("subscription ended: %w", err))
			}
			return
		case <-n.resyncCh:
			n.resync(ctx, c)
		case <-n.kick:
			n.refill(ctx, c)
		case <-flush.C:
			n.flush(c)
		case <-n.urgent:
			n.flush(c)
		case <-beat.C:
			n.beat(ctx, c)
		}
	}
}

func (n *Node) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.opt.Timeout)
}

// fail marks Redis down after a failed operation.
func (n *Node) fail(what string, err error) {
	n.setUp(false, fmt.Errorf("%s: %w", what, err))
}

// flush publishes what is queued. While Redis is away, events are
// dropped (each node counts on its own) and bans and lifts wait for the
// resync, which pushes the whole state.
func (n *Node) flush(c rueidis.Client) {
	n.mu.Lock()
	evs, bans, unbans, pms, unpms, forget, rcpts := n.events, n.bans, n.unbans, n.permits, n.unpermits, n.forget, n.rcpts
	n.events, n.bans, n.unbans, n.permits, n.unpermits, n.forget, n.rcpts = nil, nil, nil, nil, nil, nil, nil
	n.mu.Unlock()
	if len(evs)+len(bans)+len(unbans)+len(pms)+len(unpms)+len(forget)+len(rcpts) == 0 {
		return
	}
	if !n.up.Load() {
		n.dropped.Add(uint64(len(evs) + len(rcpts)))
		return
	}
	ctx, cancel := n.op()
	defer cancel()
	var cmds rueidis.Commands
	now := n.now()
	for _, b := range bans {
		cmds = append(cmds, n.storeBanCmd(c, &b, now)...)
	}
	for _, u := range unbans {
		cmds = append(cmds, n.tombCmds(c, u, now)...)
	}
	for _, id := range forget {
		cmds = append(cmds, c.B().Del().Key(n.key("ban", strconv.FormatInt(id, 10))).Build())
	}
	for _, m := range n.split(evs, bans, unbans, now) {
		cmds = append(cmds, c.B().Publish().Channel(n.channel).Message(rueidis.BinaryString(m)).Build())
	}
	for p := range slices.Chunk(pms, MaxPermits) {
		cmds = append(cmds, n.publishCmd(c, &Message{Permits: p}, now)...)
	}
	for p := range slices.Chunk(unpms, MaxPermits) {
		cmds = append(cmds, n.publishCmd(c, &Message{Unpermits: p}, now)...)
	}
	for r := range slices.Chunk(rcpts, MaxRcpts) {
		cmds = append(cmds, n.publishCmd(c, &Message{Rcpts: r}, now)...)
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			n.fail("publishing", err)
			return
		}
	}
	n.published.Add(uint64(len(evs)))
}

func (n *Node) publishCmd(c rueidis.Client, m *Message, now time.Time) rueidis.Commands {
	m.V, m.Node, m.Sent = version, n.opt.Node, now.UnixMilli()
	b, err := Encode(m)
	if err != nil {
		n.log.Error("cluster: message not published", "err", err)
		return nil
	}
	return rueidis.Commands{c.B().Publish().Channel(n.channel).Message(rueidis.BinaryString(b)).Build()}
}

// split packs what is queued into messages within the bounds.
func (n *Node) split(evs []Event, bans []Ban, unbans []Unban, now time.Time) [][]byte {
	var out [][]byte
	for len(evs)+len(bans)+len(unbans) > 0 {
		m := Message{V: version, Node: n.opt.Node, Sent: now.UnixMilli()}
		k := min(len(evs), 500)
		m.Events, evs = evs[:k], evs[k:]
		k = min(len(bans), 200)
		m.Bans, bans = bans[:k], bans[k:]
		k = min(len(unbans), 500)
		m.Unbans, unbans = unbans[:k], unbans[k:]
		b, err := Encode(&m)
		if err != nil {
			n.log.Error("cluster: message not published", "err", err)
			continue
		}
		out = append(out, b)
	}
	return out
}

// storeBan sets ban:<id> unless a tombstone of the ID exists (a ban lifted
// elsewhere is never brought back), with the ban's remaining time as TTL.
const storeBanSrc = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`

// raiseCounter raises the ban ID counter (KEYS[1]) to at least ARGV[1],
// the largest ID this node holds, and returns Redis's epoch (KEYS[2]), a
// random value set when the counter starts. A node that knew another
// epoch (ARGV[3]) sees a Redis that lost its data: the counter then
// starts ARGV[2] higher still, because other nodes may hold IDs from
// blocks reserved before that this node has not seen yet.
var raiseCounter = rueidis.NewLuaScript(`
local e = redis.call('GET', KEYS[2])
local lost = false
if not e then
  e = ARGV[4]
  redis.call('SET', KEYS[2], e)
  lost = ARGV[3] ~= ''
elseif ARGV[3] ~= '' and e ~= ARGV[3] then
  lost = true
end
local want = tonumber(ARGV[1])
if lost then want = want + tonumber(ARGV[2]) end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < want then redis.call('SET', KEYS[1], string.format('%d', want)) end
return e`)

// lostCounterMargin is how far above its own largest ID a node starts a
// counter Redis lost: more than all nodes together reserve and use while
// apart.
const lostCounterMargin = 1 << 24

func (n *Node) storeBanCmd(c rueidis.Client, b *Ban, now time.Time) rueidis.Commands {
	js, err := jsonBan(b)
	if err != nil {
		return nil
	}
	px := int64(0)
	if b.Expires != 0 {
		px = time.Unix(b.Expires, 0).Sub(now).Milliseconds()
		if px <= 0 {
			return nil
		}
	}
	id := strconv.FormatInt(b.ID, 10)
	return rueidis.Commands{c.B().Eval().Script(storeBanSrc).Numkeys(2).Key(n.key("ban", id), n.key("tomb", id)).Arg(js, strconv.FormatInt(px, 10)).Build()}
}

func (n *Node) tombCmds(c rueidis.Client, u Unban, now time.Time) rueidis.Commands {
	n.mu.Lock()
	tb, ok := n.tombs[u.ID]
	n.mu.Unlock()
	ttl := tombFloor
	if ok {
		ttl = max(tb.until.Sub(now), time.Second)
	}
	id := strconv.FormatInt(u.ID, 10)
	return rueidis.Commands{
		c.B().Set().Key(n.key("tomb", id)).Value("1").Px(ttl).Build(),
		c.B().Del().Key(n.key("ban", id)).Build(),
	}
}

// resync merges this node's state with Redis's: after a (re)connect,
// what each side made while apart goes to the other. Bans lifted
// anywhere stay lifted (tombstones); bans made anywhere are kept.
func (n *Node) resync(ctx context.Context, c rueidis.Client) {
	if ctx.Err() != nil {
		return
	}
	now := n.now()
	octx, cancel := context.WithTimeout(ctx, 4*n.opt.Timeout+5*time.Second)
	defer cancel()

	// The ID counter first: a Redis that lost it must not hand out IDs
	// held already.
	n.mu.Lock()
	known := n.epoch
	n.mu.Unlock()
	epoch, err := raiseCounter.Exec(octx, c, []string{n.key("banid"), n.key("epoch")},
		[]string{strconv.FormatInt(n.maxSharedID(), 10), strconv.Itoa(lostCounterMargin), known, newEpoch()}).ToString()
	if err != nil {
		n.fail("resync: ban id counter", err)
		return
	}
	if known != "" && epoch != known {
		n.log.Warn("cluster: Redis lost its data (restarted without persistence?); this node pushes its state back", "redis", n.opt.Addr)
	}
	n.mu.Lock()
	n.epoch = epoch
	n.mu.Unlock()
	// The IDs left from before may have been handed out again by a
	// Redis that lost its counter: reserve a fresh block.
	n.mu.Lock()
	n.ids.next, n.ids.end = 0, 0
	n.mu.Unlock()
	n.refill(octx, c)

	// Push: tombstones, then held bans.
	n.mu.Lock()
	var unbans []Unban
	for id, tb := range n.tombs {
		if !tb.until.After(now) {
			delete(n.tombs, id)
			continue
		}
		unbans = append(unbans, tb.u)
	}
	n.mu.Unlock()
	held := n.t.Bans(now)
	var cmds rueidis.Commands
	for _, u := range unbans {
		cmds = append(cmds, n.tombCmds(c, u, now)...)
	}
	wire := make([]Ban, 0, len(held))
	for i := range held {
		w := FromBan(&held[i])
		wire = append(wire, w)
		cmds = append(cmds, n.storeBanCmd(c, &w, now)...)
	}
	for _, r := range c.DoMulti(octx, cmds...) {
		if err := r.Error(); err != nil {
			n.fail("resync: pushing state", err)
			return
		}
	}

	// Pull: tombstones, then bans.
	tombIDs, err := n.scanIDs(octx, c, "tomb")
	if err != nil {
		n.fail("resync: reading tombstones", err)
		return
	}
	var added, removed []abuse.Ban
	for _, id := range tombIDs {
		removed = append(removed, n.t.LiftMerged(id, abuse.Ban{}, now)...)
		n.mu.Lock()
		if _, ok := n.tombs[id]; !ok {
			n.tombs[id] = tomb{u: Unban{ID: id, At: now.Unix()}, until: now.Add(tombFloor)}
		}
		n.mu.Unlock()
	}
	banIDs, err := n.scanIDs(octx, c, "ban")
	if err != nil {
		n.fail("resync: reading bans", err)
		return
	}
	for chunk := range slices.Chunk(banIDs, 500) {
		keys := make([]string, len(chunk))
		for i, id := range chunk {
			keys[i] = n.key("ban", strconv.FormatInt(id, 10))
		}
		vals, err := c.Do(octx, c.B().Mget().Key(keys...).Build()).ToArray()
		if err != nil {
			n.fail("resync: reading bans", err)
			return
		}
		for i, v := range vals {
			s, err := v.ToString()
			if err != nil {
				continue // gone since the scan
			}
			b, err := ParseBan([]byte(s))
			if err != nil || b.ID != chunk[i] {
				n.rejected.Add(1)
				n.log.Warn("cluster: a ban kept in Redis is not valid; ignored", "key", keys[i], "err", err)
				continue
			}
			n.mergeBan(b, now, &added, &removed)
		}
	}
	if n.hooks.BansChanged != nil && len(added)+len(removed) > 0 {
		n.hooks.BansChanged(added, removed, now)
	}
	// Tell the nodes already connected what this one made while apart.
	n.mu.Lock()
	n.bans = append(n.bans, wire...)
	n.unbans = append(n.unbans, unbans...)
	n.lastSync = now
	n.mu.Unlock()
	n.resyncs.Add(1)
	n.setUp(true, nil)
	n.log.Info("cluster: state merged with Redis", "pushed_bans", len(wire), "pushed_lifts", len(unbans),
		"bans_added", len(added), "bans_lifted", len(removed))
}

// maxSharedID is the largest held ban ID below the fallback range.
func (n *Node) maxSharedID() int64 {
	var m int64
	for _, b := range n.t.Bans(n.now()) {
		if b.ID < fallbackBase {
			m = max(m, b.ID)
		}
	}
	return m
}

// forgetCopies queues the Redis keys of bans a copy with a smaller ID
// replaced.
func (n *Node) forgetCopies(bs []abuse.Ban) {
	if len(bs) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, b := range bs {
		if len(n.forget) < maxQueuedEvents {
			n.forget = append(n.forget, b.ID)
		}
	}
}

func (n *Node) tombstoned(id int64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.tombs[id]
	return ok
}

// scanIDs lists the IDs of prefix<kind>:<id> keys.
func (n *Node) scanIDs(ctx context.Context, c rueidis.Client, kind string) ([]int64, error) {
	var out []int64
	pat := n.key(kind, "*")
	cur := uint64(0)
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cur).Match(pat).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, err
		}
		for _, k := range e.Elements {
			id, err := strconv.ParseInt(strings.TrimPrefix(k, n.key(kind, "")), 10, 64)
			if err == nil && id > 0 {
				out = append(out, id)
			}
		}
		if e.Cursor == 0 {
			return out, nil
		}
		cur = e.Cursor
	}
}

// refill reserves IDs from Redis when few are left.
func (n *Node) refill(ctx context.Context, c rueidis.Client) {
	n.mu.Lock()
	left := n.ids.end - n.ids.next
	n.mu.Unlock()
	if left >= idBlock/4 {
		return
	}
	octx, cancel := context.WithTimeout(ctx, n.opt.Timeout)
	defer cancel()
	end, err := c.Do(octx, c.B().Incrby().Key(n.key("banid")).Increment(idBlock).Build()).AsInt64()
	if err != nil {
		n.fail("reserving ban ids", err)
		return
	}
	if end <= idBlock || end >= fallbackBase {
		// A counter below one block is a fresh Redis; one in the
		// fallback range is broken. Either way the block is fine to use
		// only when above 0 and below the fallback range.
		if end >= fallbackBase {
			n.log.Error("cluster: the ban id counter in Redis is out of range", "key", n.key("banid"))
			return
		}
	}
	n.mu.Lock()
	n.ids.next, n.ids.end = end-idBlock+1, end+1
	n.mu.Unlock()
}

// beat writes this node's heartbeat, reads the others', and notices a
// Redis that came back.
func (n *Node) beat(ctx context.Context, c rueidis.Client) {
	now := n.now()
	n.expireTombs(now)
	b := Beat{Node: n.opt.Node, Version: n.opt.Version, Started: n.opt.Started.Unix(), Beat: now.UnixMilli()}
	js, _ := jsonAny(b)
	octx, cancel := n.op()
	defer cancel()
	rs := c.DoMulti(octx,
		c.B().Set().Key(n.key("node", n.opt.Node)).Value(js).Px(5*n.opt.BeatEvery).Build(),
		c.B().Sadd().Key(n.key("nodes")).Member(n.opt.Node).Build(),
		c.B().Publish().Channel(n.channel).Message(mustMsg(n.opt.Node, now)).Build(),
	)
	for _, r := range rs {
		if err := r.Error(); err != nil {
			n.fail("heartbeat", err)
			return
		}
	}
	if !n.up.Load() {
		n.signal(n.resyncCh) // back: merge before saying so
	}
	n.readBeats(octx, c)
	n.refill(ctx, c)
}

func mustMsg(node string, now time.Time) string {
	b, _ := Encode(&Message{V: version, Node: node, Sent: now.UnixMilli()})
	return string(b)
}

// readBeats reads the heartbeats of the nodes in the nodes set. A node
// whose heartbeat expired (gone for 5 beats) leaves the set; it joins
// again with its next beat.
func (n *Node) readBeats(ctx context.Context, c rueidis.Client) {
	names, err := c.Do(ctx, c.B().Srandmember().Key(n.key("nodes")).Count(maxNodes).Build()).AsStrSlice()
	if err != nil || len(names) == 0 {
		return
	}
	keys := make([]string, 0, len(names))
	for _, name := range names {
		keys = append(keys, n.key("node", name))
	}
	vals, err := c.Do(ctx, c.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return
	}
	var gone []string
	n.mu.Lock()
	for _, p := range n.peers {
		p.beatSeen = false
	}
	for i, v := range vals {
		s, err := v.ToString()
		if err != nil {
			if v.IsNil() {
				gone = append(gone, names[i])
			}
			continue
		}
		b, err := ParseBeat([]byte(s))
		if err != nil || b.Node != names[i] {
			continue
		}
		if b.Node == n.opt.Node && b.Started != n.opt.Started.Unix() && !n.twinWarned {
			n.twinWarned = true
			n.log.Error("cluster: another node uses this node's name; each node needs its own cluster.node (they ignore each other's messages)", "node", b.Node)
		}
		p := n.peerLocked(b.Node)
		p.beat, p.beatSeen = b, true
	}
	n.mu.Unlock()
	if len(gone) > 0 {
		c.Do(ctx, c.B().Srem().Key(n.key("nodes")).Member(gone...).Build())
	}
}

func (n *Node) peerLocked(name string) *peer {
	p, ok := n.peers[name]
	if !ok {
		if len(n.peers) >= 1024 {
			return &peer{} // a flood of node names: not kept
		}
		p = &peer{}
		n.peers[name] = p
	}
	return p
}

func (n *Node) expireTombs(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, tb := range n.tombs {
		if !tb.until.After(now) {
			delete(n.tombs, id)
		}
	}
}

// applyLoop applies what other nodes publish.
func (n *Node) applyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case raw := <-n.inbox:
			n.Apply([]byte(raw), n.now())
		}
	}
}

// Apply applies one message another node published: its login results
// go to Hooks.Event, its bans and lifts to the tracker. A message that
// does not parse is dropped whole and logged (rate-limited by count).
func (n *Node) Apply(raw []byte, now time.Time) {
	m, err := Parse(raw)
	if err != nil {
		if n.rejected.Add(1) <= 10 {
			n.log.Warn("cluster: a message on the channel is not valid; ignored", "err", err, "bytes", len(raw))
		}
		return
	}
	if m.Node == n.opt.Node {
		return
	}
	n.received.Add(1)
	n.mu.Lock()
	p := n.peerLocked(m.Node)
	p.lastMsg = now
	p.lag = now.Sub(time.UnixMilli(m.Sent))
	n.mu.Unlock()
	if n.hooks.Event != nil {
		for _, ev := range m.Events {
			n.hooks.Event(ev, now)
		}
	}
	var added, removed []abuse.Ban
	for _, u := range m.Unbans {
		tgt, _ := u.target()
		at := time.Unix(u.At, 0)
		n.mu.Lock()
		n.tombs[u.ID] = tomb{u: u, until: now.Add(tombForever)}
		n.mu.Unlock()
		gone := n.t.LiftMerged(u.ID, tgt, at)
		for i := range gone {
			n.mu.Lock()
			n.tombs[gone[i].ID] = tomb{u: u, until: tombUntil(&gone[i], now)}
			n.mu.Unlock()
		}
		removed = append(removed, gone...)
	}
	for i := range m.Bans {
		if b, err := m.Bans[i].ToBan(); err == nil {
			n.mergeBan(b, now, &added, &removed)
		}
	}
	if n.hooks.BansChanged != nil && len(added)+len(removed) > 0 {
		n.hooks.BansChanged(added, removed, now)
	}
	if n.hooks.Rcpts != nil && len(m.Rcpts) > 0 {
		n.hooks.Rcpts(m.Rcpts, now)
	}
	if n.hooks.Permits != nil && len(m.Permits)+len(m.Unpermits) > 0 {
		var gone []netip.Prefix
		for _, x := range m.Unpermits {
			if p, err := netip.ParsePrefix(x); err == nil {
				gone = append(gone, p)
			}
		}
		n.hooks.Permits(m.Permits, gone, now)
	}
}

// Status is a node's view of the cluster.
type Status struct {
	Node       string
	Redis      string
	Up         bool
	Since      time.Time // Up last changed
	LastError  string
	LastResync time.Time
	Resyncs    uint64
	Published  uint64 // login results published
	Received   uint64 // messages applied
	Dropped    uint64 // login results not published (Redis away, queue full) or messages not read
	Rejected   uint64 // messages and stored bans that did not parse
	Nodes      []NodeStatus
}

// NodeStatus is one node as seen from here.
type NodeStatus struct {
	Name     string
	Version  string
	Started  time.Time
	LastBeat time.Time // zero: no heartbeat in Redis
	LastMsg  time.Time // when this node last heard from it (zero for itself)
	Lag      time.Duration
	Self     bool
}

// Status returns the node's state; it never waits on Redis.
func (n *Node) Status(now time.Time) Status {
	s := Status{Node: n.opt.Node, Redis: n.opt.Addr, Up: n.up.Load(), Resyncs: n.resyncs.Load(),
		Published: n.published.Load(), Received: n.received.Load(), Dropped: n.dropped.Load(), Rejected: n.rejected.Load()}
	n.mu.Lock()
	defer n.mu.Unlock()
	s.Since, s.LastError, s.LastResync = n.since, n.lastError, n.lastSync
	self := false
	for name, p := range n.peers {
		if !p.beatSeen && (p.lastMsg.IsZero() || now.Sub(p.lastMsg) > forgetPeer) {
			continue // gone
		}
		ns := NodeStatus{Name: name, LastMsg: p.lastMsg, Lag: p.lag, Self: name == n.opt.Node}
		if p.beatSeen {
			ns.Version, ns.Started, ns.LastBeat = p.beat.Version, time.Unix(p.beat.Started, 0), time.UnixMilli(p.beat.Beat)
		}
		self = self || ns.Self
		s.Nodes = append(s.Nodes, ns)
	}
	if !self {
		s.Nodes = append(s.Nodes, NodeStatus{Name: n.opt.Node, Version: n.opt.Version, Started: n.opt.Started, Self: true})
	}
	slices.SortFunc(s.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Name, b.Name) })
	return s
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func jsonBan(b *Ban) (string, error) { return jsonAny(b) }

func jsonAny(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// mergeBan merges b, another node's ban, into the tracker unless it was
// lifted, and collects what changed: the ban as held, and the copies of
// it that it replaced (forgotten in Redis too).
func (n *Node) mergeBan(b abuse.Ban, now time.Time, added, removed *[]abuse.Ban) {
	if n.tombstoned(b.ID) {
		return
	}
	a, rep, ok, err := n.t.MergeBan(b, now)
	if err != nil || !ok {
		return
	}
	*added = append(*added, a)
	*removed = append(*removed, rep...)
	n.forgetCopies(rep)
}
