package nft

import (
	"strings"
	"time"
)

// Diff returns a line diff from want to have (Render and Kernel output):
// "-" lines only in want, "+" lines only in have, each group under the
// set or chain it is in (a " " line); "" when they agree. Element timeouts
// that differ by less than Sync would correct (a twentieth, at least two
// seconds) count as equal. Inputs over MaxDiffLines lines are compared
// only up to it.
func Diff(want, have string) string {
	a, b := diffLines(want), diffLines(have)
	ops := editScript(a, b)
	var out strings.Builder
	shownCtx := ""
	ctx := ""
	for _, op := range ops {
		var l line
		switch op.kind {
		case ' ', '-':
			l = a[op.i]
		default:
			l = b[op.j]
		}
		if op.kind == ' ' {
			if isHeader(l.text) {
				ctx = l.text
			}
			continue
		}
		if ctx != "" && ctx != shownCtx && !isHeader(l.text) {
			out.WriteString(" " + ctx + "\n")
			shownCtx = ctx
		}
		out.WriteString(string(op.kind) + l.text + "\n")
		if isHeader(l.text) {
			ctx, shownCtx = l.text, l.text
		}
	}
	return out.String()
}

// MaxDiffLines bounds each side of a Diff.
const MaxDiffLines = 2_000_000

// maxEdit bounds the exact (Myers) edit script; past it Diff pairs equal
// lines in order and lists the rest.
const maxEdit = 1000

type line struct {
	text string
	key  string // text with timeouts blanked
	durs []timeoutDur
}

type timeoutDur struct {
	d  time.Duration
	ok bool
}

// blankTimeouts returns t with the value of each "timeout X" replaced by
// "*", and the values.
func blankTimeouts(t string) (string, []timeoutDur) {
	const word = "timeout "
	var b strings.Builder
	var durs []timeoutDur
	for {
		i := strings.Index(t, word)
		if i < 0 {
			b.WriteString(t)
			return b.String(), durs
		}
		b.WriteString(t[:i+len(word)])
		t = t[i+len(word):]
		j := 0
		for j < len(t) && (t[j] >= '0' && t[j] <= '9' || t[j] >= 'a' && t[j] <= 'z') {
			j++
		}
		d, ok := parseNftDuration(t[:j])
		durs = append(durs, timeoutDur{d, ok})
		b.WriteString("*")
		t = t[j:]
	}
}

func diffLines(s string) []line {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	texts := strings.Split(s, "\n")
	if len(texts) > MaxDiffLines {
		texts = texts[:MaxDiffLines]
	}
	ls := make([]line, len(texts))
	for i, t := range texts {
		l := line{text: t, key: t}
		if strings.Contains(t, "timeout ") {
			l.key, l.durs = blankTimeouts(t)
		}
		ls[i] = l
	}
	return ls
}

func (l line) equal(m line) bool {
	if l.key != m.key || len(l.durs) != len(m.durs) {
		return false
	}
	if l.text == m.text {
		return true
	}
	for i, d := range l.durs {
		e := m.durs[i]
		if !d.ok || !e.ok {
			return false
		}
		if !closeEnough(d.d, e.d) {
			return false
		}
	}
	return true
}

func isHeader(t string) bool {
	t = strings.TrimSpace(t)
	return strings.HasSuffix(t, "{") && (strings.HasPrefix(t, "set ") || strings.HasPrefix(t, "chain ") || strings.HasPrefix(t, "table "))
}

type editOp struct {
	kind byte // ' ', '-' (a[i]) or '+' (b[j])
	i, j int
}

// editScript returns a shortest edit script from a to b (Myers' O(ND)
// algorithm after trimming the common ends), or, when the two differ in
// more than maxEdit lines, one that pairs equal lines in order.
func editScript(a, b []line) []editOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre].equal(b[pre]) {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf].equal(b[len(b)-1-suf]) {
		suf++
	}
	var ops []editOp
	for i := range pre {
		ops = append(ops, editOp{' ', i, i})
	}
	mid := myers(a[pre:len(a)-suf], b[pre:len(b)-suf])
	if mid == nil {
		mid = greedy(a[pre:len(a)-suf], b[pre:len(b)-suf])
	}
	for _, op := range mid {
		op.i += pre
		op.j += pre
		ops = append(ops, op)
	}
	for k := range suf {
		ops = append(ops, editOp{' ', len(a) - suf + k, len(b) - suf + k})
	}
	return ops
}

// myers returns the edit script, or nil when it needs more than maxEdit
// edits.
func myers(a, b []line) []editOp {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return []editOp{}
	}
	maxD := min(n+m, maxEdit)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x].equal(b[y]) {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(trace, a, b, d)
			}
		}
	}
	return nil
}

// backtrack walks the saved V arrays back from (len(a), len(b)).
func backtrack(trace [][]int, a, b []line, d int) []editOp {
	var rev []editOp
	x, y := len(a), len(b)
	for ; d >= 0; d-- {
		vd := trace[d] // V before step d, indexed k+d+1
		get := func(k int) int { return vd[k+d+1] }
		k := x - y
		var prevK int
		if d == 0 {
			prevK = 0
		} else if k == -d || (k != d && get(k-1) < get(k+1)) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := 0
		if d > 0 {
			prevX = get(prevK)
		}
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x--
			y--
			rev = append(rev, editOp{' ', x, y})
		}
		if d > 0 {
			if x == prevX {
				y--
				rev = append(rev, editOp{'+', x, y})
			} else {
				x--
				rev = append(rev, editOp{'-', x, y})
			}
		}
	}
	ops := make([]editOp, len(rev))
	for i, op := range rev {
		ops[len(rev)-1-i] = op
	}
	return ops
}

// greedy pairs each line of a with the first unused equal line of b after
// the last pair, and lists the others as removed or added.
func greedy(a, b []line) []editOp {
	next := map[string][]int{}
	for j, l := range b {
		next[l.key] = append(next[l.key], j)
	}
	var ops []editOp
	j := 0
	for i, l := range a {
		cands := next[l.key]
		for len(cands) > 0 && cands[0] < j {
			cands = cands[1:]
		}
		match := -1
		for ci, c := range cands {
			if b[c].equal(l) {
				match = c
				cands = append(cands[:ci:ci], cands[ci+1:]...)
				break
			}
		}
		next[l.key] = cands
		if match < 0 {
			ops = append(ops, editOp{'-', i, j})
			continue
		}
		for ; j < match; j++ {
			ops = append(ops, editOp{'+', i, j})
		}
		ops = append(ops, editOp{' ', i, j})
		j++
	}
	for ; j < len(b); j++ {
		ops = append(ops, editOp{'+', len(a), j})
	}
	return ops
}
