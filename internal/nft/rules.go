package nft

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// rule is one rule of the input chain: its nft text and its expressions.
// The expressions mirror what nft(8) 1.0.6 generates for the text, so a
// ruleset loaded with `nft -f` from Render is recognized by Kernel too.
type rule struct {
	text  string
	ports []uint16 // the anonymous port set the rule looks up, if more than one port
	// build returns the expressions; sets resolves a named set (with
	// the transaction ID when it is created in the same batch) and anon
	// is the anonymous port set, if any.
	build func(sets func(name string) *nftables.Set, anon *nftables.Set) []expr.Any
}

// addrMatch is how a rule looks at the source address of one family.
type addrMatch struct {
	v6 bool
	// mask64: IPv6 addresses are counted and banned per /64.
	mask64 bool
}

func (m addrMatch) suffix() string {
	if m.v6 {
		return "_v6"
	}
	return "_v4"
}

func (m addrMatch) text() string {
	switch {
	case m.v6 && m.mask64:
		return "ip6 saddr & ffff:ffff:ffff:ffff::"
	case m.v6:
		return "ip6 saddr"
	}
	return "ip saddr"
}

// family: meta nfproto == ipv4/ipv6.
func (m addrMatch) family() []expr.Any {
	proto := byte(unix.NFPROTO_IPV4)
	if m.v6 {
		proto = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// load puts the source address (masked to /64 if asked) in register 1.
func (m addrMatch) load() []expr.Any {
	if !m.v6 {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}}
	}
	es := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}}
	if m.mask64 {
		mask := make([]byte, 16)
		for i := range 8 {
			mask[i] = 0xff
		}
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: make([]byte, 16)})
	}
	return es
}

func tcp() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// dport matches the destination port against ports: a comparison for one
// port, a lookup in the rule's anonymous set for more.
func dport(ports []uint16, anon *nftables.Set) []expr.Any {
	es := append(tcp(), &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if len(ports) == 1 {
		return append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])})
	}
	return append(es, lookup(anon))
}

func dportText(ports []uint16) string {
	if len(ports) == 1 {
		return fmt.Sprintf("tcp dport %d", ports[0])
	}
	return "tcp dport " + portSetText(ports)
}

// loopbackRule: iif "lo" accept (lo is interface 1 in every namespace).
func loopbackRule() rule {
	return rule{
		text: `iif "lo" accept`,
		build: func(func(string) *nftables.Set, *nftables.Set) []expr.Any {
			return []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
				verdict(false),
			}
		},
	}
}

func portSetText(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

func lookup(s *nftables.Set) *expr.Lookup {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}
}

func verdict(drop bool) *expr.Verdict {
	if drop {
		return &expr.Verdict{Kind: expr.VerdictDrop}
	}
	return &expr.Verdict{Kind: expr.VerdictAccept}
}

func verdictText(drop bool) string {
	if drop {
		return "drop"
	}
	return "accept"
}

// portsRule: tcp dport PORTS SADDR @SET accept|drop.
func portsRule(ports []uint16, m addrMatch, set string, drop bool) rule {
	r := rule{text: fmt.Sprintf("%s %s %s@%s %s", dportText(ports), m.text(), eqText(m), set, verdictText(drop))}
	if len(ports) > 1 {
		r.ports = ports
	}
	r.build = func(sets func(string) *nftables.Set, anon *nftables.Set) []expr.Any {
		es := dport(ports, anon)
		es = append(es, m.family()...)
		es = append(es, m.load()...)
		return append(es, lookup(sets(set)), verdict(drop))
	}
	return r
}

// eqText: nft prints a masked address compared with a set as `== @set`.
func eqText(m addrMatch) string {
	if m.mask64 {
		return "== "
	}
	return ""
}

// trustedRule: ip saddr . tcp dport @trusted_v4 accept.
func trustedRule(m addrMatch) rule {
	set := "trusted" + m.suffix()
	return rule{
		text: fmt.Sprintf("%s . tcp dport @%s accept", m.text(), set),
		build: func(sets func(string) *nftables.Set, _ *nftables.Set) []expr.Any {
			es := m.family()
			es = append(es, tcp()...)
			es = append(es, m.load()...)
			// The port goes in the 32-bit register after the address.
			reg := uint32(9) // NFT_REG32_01
			if m.v6 {
				reg = 2 // NFT_REG_2, i.e. NFT_REG32_04
			}
			es = append(es, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			return append(es, lookup(sets(set)), verdict(false))
		},
	}
}

// closeRule: tcp dport PORTS drop.
func closeRule(ports []uint16) rule {
	r := rule{text: dportText(ports) + " drop"}
	if len(ports) > 1 {
		r.ports = ports
	}
	r.build = func(_ func(string) *nftables.Set, anon *nftables.Set) []expr.Any {
		return append(dport(ports, anon), verdict(true))
	}
	return r
}

// rateRule: tcp dport PORTS ct state new update @rate_v4 { ip saddr
// timeout 1m limit rate over 10/minute burst 10 packets } update
// @autoban_v4 { ip saddr timeout 1h } drop.
//
// Each new connection refreshes the address's meter; the meter lets Rate
// connections through in a burst, refilled at Rate per RatePer. The
// connection over the rate puts the address in the autoban set, whose
// rule (earlier in the chain) drops it for AutobanFor.
func rateRule(cfg Config, ports []uint16, m addrMatch) rule {
	unitName, _ := limitUnit(cfg.RatePer)
	rate, autoban := "rate"+m.suffix(), "autoban"+m.suffix()
	r := rule{text: fmt.Sprintf("%s ct state new update @%s { %s timeout %s limit rate over %d/%s burst %d packets } update @%s { %s timeout %s } drop",
		dportText(ports), rate, m.text(), nftDuration(cfg.RatePer), cfg.Rate, unitName, cfg.Rate, autoban, m.text(), nftDuration(cfg.AutobanFor))}
	if len(ports) > 1 {
		r.ports = ports
	}
	unit := expr.LimitTime(cfg.RatePer / time.Second)
	r.build = func(sets func(string) *nftables.Set, anon *nftables.Set) []expr.Any {
		es := dport(ports, anon)
		es = append(es,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
		es = append(es, m.family()...)
		es = append(es, m.load()...)
		rs := sets(rate)
		es = append(es, &expr.Dynset{SrcRegKey: 1, SetName: rs.Name, SetID: rs.ID,
			Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: cfg.RatePer,
			Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(cfg.Rate), Over: true, Unit: unit, Burst: cfg.Rate}}})
		es = append(es, m.load()...)
		as := sets(autoban)
		es = append(es, &expr.Dynset{SrcRegKey: 1, SetName: as.Name, SetID: as.ID,
			Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: cfg.AutobanFor})
		return append(es, verdict(true))
	}
	return r
}

// limitUnit is nft's name for a rate's time unit.
func limitUnit(d time.Duration) (string, bool) {
	switch d {
	case time.Second:
		return "second", true
	case time.Minute:
		return "minute", true
	case time.Hour:
		return "hour", true
	case 24 * time.Hour:
		return "day", true
	}
	return "", false
}

// rules returns the input chain of cfg, in order. Only TCP to the mail
// ports is looked at; everything else passes untouched (policy accept).
func (c Config) rules() []rule {
	all := c.mailPorts()
	var limited []uint16 // ports with a rate limit and the autoban drop
	switch c.Mode {
	case Autoban:
		limited = sortedPorts(c.RetrievalPorts, c.SubmissionPorts)
	case Protected:
		// The submission ports are closed to the untrusted: counting
		// the retries of a client refused there would get it banned
		// from IMAP too.
		limited = sortedPorts(c.RetrievalPorts)
	}
	v4, v6 := addrMatch{}, addrMatch{v6: true}
	v6net := addrMatch{v6: true, mask64: true}
	// Loopback first: a webmail or a proxy on the server itself opens
	// many IMAP and submission connections from 127.0.0.1 or ::1, and
	// must never be rate-limited or closed by a mode.
	rs := []rule{loopbackRule()}
	// Trusted networks and addresses next: they are exempt from
	// everything below, bans included.
	rs = append(rs,
		portsRule(all, v4, "trusted_nets_v4", false),
		portsRule(all, v6, "trusted_nets_v6", false),
		trustedRule(v4),
		trustedRule(v6))
	if c.Bans {
		rs = append(rs,
			portsRule(all, v4, "banned_v4", true),
			portsRule(all, v6, "banned_v6", true),
			portsRule(all, v4, "banned_nets_v4", true),
			portsRule(all, v6, "banned_nets_v6", true))
	}
	if len(limited) > 0 {
		rs = append(rs,
			portsRule(limited, v4, "autoban_v4", true),
			portsRule(limited, v6net, "autoban_v6", true))
	}
	switch c.Mode {
	case Protected:
		if ps := sortedPorts(c.SubmissionPorts); len(ps) > 0 {
			rs = append(rs, closeRule(ps))
		}
	case Private:
		if ps := sortedPorts(c.RetrievalPorts, c.SubmissionPorts); len(ps) > 0 {
			rs = append(rs, closeRule(ps))
		}
	}
	if len(limited) > 0 {
		rs = append(rs, rateRule(c, limited, v4), rateRule(c, limited, v6net))
	}
	return rs
}
