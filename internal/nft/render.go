package nft

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/nftables"
)

// Render returns the ruleset mailgate wants for cfg and st at now, in `nft
// -f` syntax: the table, its sets with their elements (timeouts are the
// time left at now, in whole seconds) and the input chain. Elements are
// one per line and sorted, so the output is deterministic. The rate and
// autoban sets are shown empty: the kernel fills them.
func Render(cfg Config, st State, now time.Time) string {
	w := newDesired()
	w.load(st, now)
	t := table()
	var sets []setView
	for _, d := range setDefs() {
		sets = append(sets, setView{def: d, set: d.nftSet(t), elems: w.elements(cfg, d, now)})
	}
	var lines []string
	for _, r := range cfg.rules() {
		lines = append(lines, r.text)
	}
	return renderTable(sets, []chainView{{name: ChainName, header: baseChainHeader("filter", nftables.ChainHookInput, cfg.Priority, nftables.ChainPolicyAccept), rules: lines}}, now)
}

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// setView is a set to print: its definition and its elements (none for
// the kernel-managed sets).
type setView struct {
	def   setDef
	set   *nftables.Set
	elems []element
	raw   []string // elements printed as they are, for sets mailgate does not know
}

type chainView struct {
	name   string
	header string // "type filter hook input priority filter - 10; policy accept;", or "" for a regular chain
	rules  []string
}

func renderTable(sets []setView, chains []chainView, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range sets {
		sep()
		fmt.Fprintf(&b, "\tset %s {\n", s.set.Name)
		fmt.Fprintf(&b, "\t\ttype %s\n", s.set.KeyType.Name)
		if s.set.Size != 0 {
			fmt.Fprintf(&b, "\t\tsize %d\n", s.set.Size)
		}
		if f := setFlags(s.set); f != "" {
			fmt.Fprintf(&b, "\t\tflags %s\n", f)
		}
		if s.set.Timeout != 0 {
			fmt.Fprintf(&b, "\t\ttimeout %s\n", nftDuration(s.set.Timeout))
		}
		if len(s.elems) > 0 || len(s.raw) > 0 {
			b.WriteString("\t\telements = {\n")
			for _, e := range s.elems {
				fmt.Fprintf(&b, "\t\t\t%s,\n", elementText(s.def, e, now))
			}
			for _, e := range s.raw {
				fmt.Fprintf(&b, "\t\t\t%s,\n", e)
			}
			b.WriteString("\t\t}\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.header != "" {
			fmt.Fprintf(&b, "\t\t%s\n", c.header)
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// setFlags prints a set's flags in nft's order.
func setFlags(s *nftables.Set) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{s.Constant, "constant"}, {s.Dynamic, "dynamic"}, {s.Interval, "interval"}, {s.HasTimeout, "timeout"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ",")
}

func elementText(d setDef, e element, now time.Time) string {
	var s string
	switch {
	case d.kind == kindAddrPort:
		s = fmt.Sprintf("%v . %d", e.from, e.port)
	case e.from == e.to:
		s = e.from.String()
	default:
		if p, ok := rangePrefix(e.from, e.to); ok {
			s = p.String()
		} else {
			s = fmt.Sprintf("%v-%v", e.from, e.to)
		}
	}
	if !e.expires.IsZero() {
		s += " timeout " + nftDuration(shown(e.expires.Sub(now)))
	}
	return s
}

// shown rounds a time left to whole seconds (milliseconds under a second).
func shown(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return max(d.Round(time.Millisecond), time.Millisecond)
}

// nftDuration prints d as nft does: 1d2h3m4s5ms.
func nftDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}

// parseNftDuration reads what nftDuration prints.
func parseNftDuration(s string) (time.Duration, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 12 {
			return 0, false
		}
		var n time.Duration
		for _, c := range s[:i] {
			n = n*10 + time.Duration(c-'0')
		}
		s = s[i:]
		var unit time.Duration
		switch {
		case strings.HasPrefix(s, "ms"):
			unit, s = time.Millisecond, s[2:]
		case strings.HasPrefix(s, "d"):
			unit, s = 24*time.Hour, s[1:]
		case strings.HasPrefix(s, "h"):
			unit, s = time.Hour, s[1:]
		case strings.HasPrefix(s, "m"):
			unit, s = time.Minute, s[1:]
		case strings.HasPrefix(s, "s"):
			unit, s = time.Second, s[1:]
		default:
			return 0, false
		}
		if n > (math.MaxInt64-total)/unit {
			return 0, false
		}
		total += n * unit
	}
	return total, true
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	case *nftables.ChainHookIngress:
		return "ingress"
	}
	return fmt.Sprintf("hook%d", h)
}

func baseChainHeader(typ nftables.ChainType, hook *nftables.ChainHook, prio int32, policy nftables.ChainPolicy) string {
	h := hookName(*hook)
	p := "filter"
	switch {
	case prio > 0:
		p = fmt.Sprintf("filter + %d", prio)
	case prio < 0:
		p = fmt.Sprintf("filter - %d", -int64(prio))
	}
	pol := "accept"
	if policy == nftables.ChainPolicyDrop {
		pol = "drop"
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy %s;", typ, h, p, pol)
}
