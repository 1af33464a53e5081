package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// fakeKernel answers the netlink messages of a Conn dialled with
// nftables.WithTestDial the way nf_tables in Linux 6.1 does, for the
// subset mailgate uses: one table, named and anonymous sets with
// timeouts, base chains and rules. Batches are atomic: a failing message
// aborts the whole batch. Like 6.1 (before the timeout update of 6.10), an
// element added again keeps its old timeout. Every message it receives is
// recorded, decoded, for the tests to check.
type fakeKernel struct {
	t   testing.TB
	now time.Time // the kernel's clock, for element expiry

	st fakeState

	batches [][]string // each batch received, described (see describe)
	gets    []string   // each read request, by message type

	// failGet makes read requests of these message types fail.
	failGet map[int]syscall.Errno
	// failBatch makes the next batch fail on its first message of this
	// type (0 = no failure).
	failBatch int
	// countOnly keeps no state: batches are acknowledged and counted
	// (for the benchmark).
	countOnly bool
	messages  int
}

type fakeState struct {
	table   bool
	sets    map[string]*fakeSet
	chains  map[string]*fakeChain
	anonSeq int
	handle  uint64
}

type fakeSet struct {
	attrs []byte // the NEWSET attributes, replayed on GETSET
	name  string
	anon  bool
	elems map[string]fakeElem // by key and end flag
}

type fakeElem struct {
	key     []byte
	end     bool
	timeout time.Duration
	expires time.Time // zero: none
}

type fakeChain struct {
	attrs []byte
	hook  string // hook attributes, to detect a changed priority
	rules []fakeRule
}

type fakeRule struct {
	attrs  []byte // NEWRULE attributes with anonymous set names resolved
	handle uint64
	anon   []string
}

func newFakeKernel(t testing.TB, now time.Time) *fakeKernel {
	return &fakeKernel{t: t, now: now, failGet: map[int]syscall.Errno{},
		st: fakeState{sets: map[string]*fakeSet{}, chains: map[string]*fakeChain{}}}
}

func (k *fakeKernel) conn() *nftables.Conn {
	c, err := nftables.New(nftables.WithTestDial(k.dial))
	if err != nil {
		k.t.Fatal(err)
	}
	return c
}

func msgType(m netlink.Message) int { return int(m.Header.Type & 0xff) }

func (k *fakeKernel) dial(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) == 0 {
		return nil, nil
	}
	if req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		return k.batch(req)
	}
	if len(req) != 1 {
		k.t.Fatalf("fake kernel: %d messages outside a batch", len(req))
	}
	m := req[0]
	k.gets = append(k.gets, fmt.Sprintf("get%d", msgType(m)))
	if errno, ok := k.failGet[msgType(m)]; ok {
		return nltest.Error(int(errno), req)
	}
	replies, errno := k.get(m)
	if errno != 0 {
		return nltest.Error(int(errno), req)
	}
	for i := range replies {
		replies[i].Header.Sequence = m.Header.Sequence
		replies[i].Header.PID = m.Header.PID
	}
	if m.Header.Flags&netlink.Dump == 0 {
		return replies, nil
	}
	replies = append(replies, netlink.Message{Header: netlink.Header{Type: netlink.Done,
		Sequence: m.Header.Sequence, PID: m.Header.PID}, Data: []byte{0, 0, 0, 0}})
	for i := range replies {
		replies[i].Header.Flags |= netlink.Multi
	}
	return replies, nil
}

// attrs decodes the attributes after the nfgenmsg header.
func attrs(t testing.TB, b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	if len(b) <= 4 {
		return out
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func nested(t testing.TB, b []byte) []netlink.Attribute {
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func cstr(b []byte) string { return strings.TrimRight(string(b), "\x00") }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func marshal(t testing.TB, as []netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes(as)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reply(typ int, body []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data:   append([]byte{unix.NFPROTO_INET, 0, 0, 0}, body...),
	}
}

func (k *fakeKernel) get(m netlink.Message) ([]netlink.Message, syscall.Errno) {
	a := attrs(k.t, m.Data)
	switch msgType(m) {
	case unix.NFT_MSG_GETTABLE:
		if !k.st.table {
			return nil, unix.ENOENT
		}
		return []netlink.Message{reply(unix.NFT_MSG_NEWTABLE, marshal(k.t, []netlink.Attribute{
			{Type: unix.NFTA_TABLE_NAME, Data: []byte(TableName + "\x00")},
			{Type: unix.NFTA_TABLE_FLAGS, Data: be32(0)},
		}))}, 0
	case unix.NFT_MSG_GETCHAIN:
		var out []netlink.Message
		for _, name := range slices.Sorted(maps.Keys(k.st.chains)) {
			out = append(out, reply(unix.NFT_MSG_NEWCHAIN, k.st.chains[name].attrs))
		}
		return out, 0
	case unix.NFT_MSG_GETSET:
		if !k.st.table {
			return nil, unix.ENOENT
		}
		var out []netlink.Message
		for _, name := range slices.Sorted(maps.Keys(k.st.sets)) {
			out = append(out, reply(unix.NFT_MSG_NEWSET, k.st.sets[name].attrs))
		}
		return out, 0
	case unix.NFT_MSG_GETSETELEM:
		s, ok := k.st.sets[cstr(a[unix.NFTA_SET_ELEM_LIST_SET])]
		if !ok {
			return nil, unix.ENOENT
		}
		var elems []netlink.Attribute
		for _, key := range slices.Sorted(maps.Keys(s.elems)) {
			e := s.elems[key]
			if !e.expires.IsZero() && !e.expires.After(k.now) {
				continue
			}
			ea := []netlink.Attribute{{Type: unix.NFTA_SET_ELEM_KEY | unix.NLA_F_NESTED,
				Data: marshal(k.t, []netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: e.key}})}}
			if e.end {
				ea = append(ea, netlink.Attribute{Type: unix.NFTA_SET_ELEM_FLAGS, Data: be32(unix.NFT_SET_ELEM_INTERVAL_END)})
			}
			if !e.expires.IsZero() {
				ea = append(ea,
					netlink.Attribute{Type: unix.NFTA_SET_ELEM_TIMEOUT, Data: be64(uint64(e.timeout.Milliseconds()))},
					netlink.Attribute{Type: unix.NFTA_SET_ELEM_EXPIRATION, Data: be64(uint64(e.expires.Sub(k.now).Milliseconds()))})
			}
			elems = append(elems, netlink.Attribute{Type: unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED, Data: marshal(k.t, ea)})
		}
		if len(elems) == 0 {
			return nil, 0
		}
		return []netlink.Message{reply(unix.NFT_MSG_NEWSETELEM, marshal(k.t, []netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(TableName + "\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(s.name + "\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS | unix.NLA_F_NESTED, Data: marshal(k.t, elems)},
		}))}, 0
	case unix.NFT_MSG_GETRULE:
		c, ok := k.st.chains[cstr(a[unix.NFTA_RULE_CHAIN])]
		if !ok {
			return nil, unix.ENOENT
		}
		var out []netlink.Message
		for _, r := range c.rules {
			out = append(out, reply(unix.NFT_MSG_NEWRULE, r.attrs))
		}
		return out, 0
	}
	k.t.Fatalf("fake kernel: unexpected request type %d", msgType(m))
	return nil, 0
}

func (k *fakeKernel) batch(req []netlink.Message) ([]netlink.Message, error) {
	msgs := req[1 : len(req)-1]
	k.messages += len(msgs)
	if k.countOnly {
		return nil, nil
	}
	var desc []string
	for _, m := range msgs {
		desc = append(desc, k.describe(m)...)
	}
	k.batches = append(k.batches, desc)
	st := k.st.clone()
	for _, m := range msgs {
		if k.failBatch != 0 && msgType(m) == k.failBatch {
			k.failBatch = 0
			return nltest.Error(int(unix.ENOMEM), []netlink.Message{m})
		}
		if errno := k.apply(&st, m); errno != 0 {
			return nltest.Error(int(errno), []netlink.Message{m})
		}
	}
	k.st = st
	return nil, nil
}

func (s fakeState) clone() fakeState {
	c := s
	c.sets = map[string]*fakeSet{}
	for n, x := range s.sets {
		y := *x
		y.elems = maps.Clone(x.elems)
		c.sets[n] = &y
	}
	c.chains = map[string]*fakeChain{}
	for n, x := range s.chains {
		y := *x
		y.rules = slices.Clone(x.rules)
		c.chains[n] = &y
	}
	return c
}

func elemKey(key []byte, end bool) string { return fmt.Sprintf("%x/%v", key, end) }

// elemAttrs decodes the element list of a NEWSETELEM or DELSETELEM.
func (k *fakeKernel) elemAttrs(list []byte) []fakeElem {
	var out []fakeElem
	for _, le := range nested(k.t, list) {
		var e fakeElem
		for _, a := range nested(k.t, le.Data) {
			switch a.Type &^ unix.NLA_F_NESTED {
			case unix.NFTA_SET_ELEM_KEY:
				e.key = nested(k.t, a.Data)[0].Data
			case unix.NFTA_SET_ELEM_FLAGS:
				e.end = binary.BigEndian.Uint32(a.Data)&unix.NFT_SET_ELEM_INTERVAL_END != 0
			case unix.NFTA_SET_ELEM_TIMEOUT:
				e.timeout = time.Duration(binary.BigEndian.Uint64(a.Data)) * time.Millisecond
			}
		}
		out = append(out, e)
	}
	return out
}

func (k *fakeKernel) apply(st *fakeState, m netlink.Message) syscall.Errno {
	a := attrs(k.t, m.Data)
	switch msgType(m) {
	case unix.NFT_MSG_NEWTABLE:
		st.table = true
	case unix.NFT_MSG_NEWSET:
		if !st.table {
			return unix.ENOENT
		}
		name := cstr(a[unix.NFTA_SET_NAME])
		flags := binary.BigEndian.Uint32(a[unix.NFTA_SET_FLAGS])
		s := &fakeSet{name: name, anon: flags&unix.NFT_SET_ANONYMOUS != 0, elems: map[string]fakeElem{}}
		if s.anon {
			s.name = fmt.Sprintf("__set%d", st.anonSeq)
			st.anonSeq++
			name = fmt.Sprintf("%s#%d", name, binary.BigEndian.Uint32(a[unix.NFTA_SET_ID])) // "__set%d#ID" until bound
		} else if _, ok := st.sets[name]; ok {
			return 0 // exists: NLM_F_CREATE without NLM_F_EXCL
		}
		var body []netlink.Attribute
		ad, _ := netlink.NewAttributeDecoder(m.Data[4:])
		for ad.Next() {
			data := ad.Bytes()
			if ad.Type() == unix.NFTA_SET_NAME {
				data = []byte(s.name + "\x00")
			}
			body = append(body, netlink.Attribute{Type: ad.Type() | ad.TypeFlags(), Data: data})
		}
		s.attrs = marshal(k.t, body)
		st.sets[name] = s
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		name := cstr(a[unix.NFTA_SET_ELEM_LIST_SET])
		if strings.HasPrefix(name, "__set") {
			name = fmt.Sprintf("%s#%d", name, binary.BigEndian.Uint32(a[unix.NFTA_SET_ELEM_LIST_SET_ID]))
		}
		s, ok := st.sets[name]
		if !ok {
			return unix.ENOENT
		}
		for _, e := range k.elemAttrs(a[unix.NFTA_SET_ELEM_LIST_ELEMENTS]) {
			key := elemKey(e.key, e.end)
			old, exists := s.elems[key]
			if exists && !old.expires.IsZero() && !old.expires.After(k.now) {
				exists = false
			}
			if msgType(m) == unix.NFT_MSG_DELSETELEM {
				if !exists {
					return unix.ENOENT
				}
				delete(s.elems, key)
				continue
			}
			if exists {
				continue // Linux 6.1 keeps the old timeout
			}
			if e.timeout > 0 {
				e.expires = k.now.Add(e.timeout)
			}
			s.elems[key] = e
		}
	case unix.NFT_MSG_NEWCHAIN:
		name := cstr(a[unix.NFTA_CHAIN_NAME])
		hook := fmt.Sprintf("%x", a[unix.NFTA_CHAIN_HOOK])
		if c, ok := st.chains[name]; ok {
			if c.hook != hook {
				return unix.EEXIST // a base chain's hook cannot change
			}
			return 0
		}
		body := m.Data[4:]
		st.chains[name] = &fakeChain{attrs: body, hook: hook}
	case unix.NFT_MSG_DELCHAIN:
		name := cstr(a[unix.NFTA_CHAIN_NAME])
		c, ok := st.chains[name]
		if !ok {
			return unix.ENOENT
		}
		if len(c.rules) > 0 {
			return unix.EBUSY
		}
		delete(st.chains, name)
	case unix.NFT_MSG_DELRULE:
		c, ok := st.chains[cstr(a[unix.NFTA_RULE_CHAIN])]
		if !ok {
			return unix.ENOENT
		}
		if _, one := a[unix.NFTA_RULE_HANDLE]; one {
			k.t.Fatal("fake kernel: deleting one rule is not supported")
		}
		for _, r := range c.rules {
			for _, s := range r.anon {
				delete(st.sets, s)
			}
		}
		c.rules = nil
	case unix.NFT_MSG_NEWRULE:
		c, ok := st.chains[cstr(a[unix.NFTA_RULE_CHAIN])]
		if !ok {
			return unix.ENOENT
		}
		st.handle++
		r := fakeRule{handle: st.handle}
		var body []netlink.Attribute
		ad, _ := netlink.NewAttributeDecoder(m.Data[4:])
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE, unix.NFTA_RULE_CHAIN:
				body = append(body, netlink.Attribute{Type: ad.Type(), Data: ad.Bytes()})
			case unix.NFTA_RULE_EXPRESSIONS:
				body = append(body, netlink.Attribute{Type: unix.NFTA_RULE_EXPRESSIONS | unix.NLA_F_NESTED,
					Data: k.bindAnon(st, ad.Bytes(), &r)})
			}
		}
		body = append(body, netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: be64(r.handle)})
		r.attrs = marshal(k.t, body)
		c.rules = append(c.rules, r)
	default:
		k.t.Fatalf("fake kernel: unexpected batch message type %d", msgType(m))
	}
	return 0
}

// bindAnon rewrites the lookups of a rule's expressions that name an
// anonymous set of this batch ("__set%d" and its ID) to the set's name,
// as the kernel binds them.
func (k *fakeKernel) bindAnon(st *fakeState, exprs []byte, r *fakeRule) []byte {
	var out []netlink.Attribute
	for _, e := range nested(k.t, exprs) {
		parts := nested(k.t, e.Data)
		var name string
		for _, p := range parts {
			if p.Type == unix.NFTA_EXPR_NAME {
				name = cstr(p.Data)
			}
		}
		if name == "lookup" {
			for i, p := range parts {
				if p.Type&^unix.NLA_F_NESTED != unix.NFTA_EXPR_DATA {
					continue
				}
				la := nested(k.t, p.Data)
				var set string
				var id uint32
				for _, x := range la {
					switch x.Type {
					case unix.NFTA_LOOKUP_SET:
						set = cstr(x.Data)
					case unix.NFTA_LOOKUP_SET_ID:
						id = binary.BigEndian.Uint32(x.Data)
					}
				}
				if strings.HasPrefix(set, "__set") {
					key := fmt.Sprintf("%s#%d", set, id)
					s, ok := st.sets[key]
					if !ok {
						k.t.Fatalf("fake kernel: rule looks up unknown anonymous set %s", key)
					}
					delete(st.sets, key)
					st.sets[s.name] = s
					r.anon = append(r.anon, s.name)
					for j, x := range la {
						if x.Type == unix.NFTA_LOOKUP_SET {
							la[j].Data = []byte(s.name + "\x00")
						}
					}
					parts[i] = netlink.Attribute{Type: unix.NFTA_EXPR_DATA | unix.NLA_F_NESTED, Data: marshal(k.t, la)}
				}
			}
		}
		for i := range parts {
			if parts[i].Type&^unix.NLA_F_NESTED == unix.NFTA_EXPR_DATA {
				parts[i].Type = unix.NFTA_EXPR_DATA | unix.NLA_F_NESTED
			}
		}
		out = append(out, netlink.Attribute{Type: unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED, Data: marshal(k.t, parts)})
	}
	return marshal(k.t, out)
}

// describe turns a batch message into lines a test can compare: elements
// one per line ("add banned_v4 192.0.2.1 timeout 1h0m0s"), the rest one
// line per message ("newset trusted_v4", "newrule input", ...).
func (k *fakeKernel) describe(m netlink.Message) []string {
	a := attrs(k.t, m.Data)
	switch msgType(m) {
	case unix.NFT_MSG_NEWTABLE:
		return []string{"newtable " + cstr(a[unix.NFTA_TABLE_NAME])}
	case unix.NFT_MSG_NEWSET:
		return []string{"newset " + cstr(a[unix.NFTA_SET_NAME])}
	case unix.NFT_MSG_NEWCHAIN:
		return []string{"newchain " + cstr(a[unix.NFTA_CHAIN_NAME])}
	case unix.NFT_MSG_DELCHAIN:
		return []string{"delchain " + cstr(a[unix.NFTA_CHAIN_NAME])}
	case unix.NFT_MSG_DELRULE:
		return []string{"flushchain " + cstr(a[unix.NFTA_RULE_CHAIN])}
	case unix.NFT_MSG_NEWRULE:
		return []string{"newrule " + cstr(a[unix.NFTA_RULE_CHAIN])}
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		set := cstr(a[unix.NFTA_SET_ELEM_LIST_SET])
		if strings.HasPrefix(set, "__set") {
			return []string{"anonymous set elements"}
		}
		verb := "add"
		if msgType(m) == unix.NFT_MSG_DELSETELEM {
			verb = "del"
		}
		var out []string
		for _, e := range k.elemAttrs(a[unix.NFTA_SET_ELEM_LIST_ELEMENTS]) {
			s := fmt.Sprintf("%s %s %s", verb, set, keyText(e.key))
			if e.end {
				s += " end"
			}
			if e.timeout > 0 {
				s += " timeout " + e.timeout.String()
			}
			out = append(out, s)
		}
		return out
	}
	return []string{fmt.Sprintf("type %d", msgType(m))}
}

func keyText(key []byte) string {
	switch len(key) {
	case 4, 16:
		a, _ := netip.AddrFromSlice(key)
		return a.String()
	case 8, 20:
		a, _ := netip.AddrFromSlice(key[:len(key)-4])
		return fmt.Sprintf("%v . %d", a, binary.BigEndian.Uint16(key[len(key)-4:]))
	}
	return fmt.Sprintf("%x", key)
}

// elements lists a set's live elements as describe does, sorted.
func (k *fakeKernel) elements(set string) []string {
	s, ok := k.st.sets[set]
	if !ok {
		return nil
	}
	var out []string
	for _, e := range s.elems {
		if !e.expires.IsZero() && !e.expires.After(k.now) {
			continue
		}
		l := keyText(e.key)
		if e.end {
			l += " end"
		}
		if !e.expires.IsZero() {
			l += " expires " + e.expires.Sub(k.now).String()
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// elementOps returns the element lines of the last batch.
func (k *fakeKernel) elementOps() []string {
	if len(k.batches) == 0 {
		return nil
	}
	var out []string
	for _, l := range k.batches[len(k.batches)-1] {
		if strings.HasPrefix(l, "add ") || strings.HasPrefix(l, "del ") {
			out = append(out, l)
		}
	}
	return out
}
