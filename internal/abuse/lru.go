package abuse

// lru is a bounded table of keys, each with a fixed number of int64 words
// of state, kept in slabs: one map from key to slot, and chunks of nodes
// and of words. Nothing per key is a separate allocation, the map holds no
// pointers when K holds none (so the garbage collector does not scan a
// million keys), and growing never copies the slabs (so a writer holding
// the Tracker's lock never stops for a large copy).
//
// Nodes form a doubly linked list ordered by last update, most recent at
// head; when the table is full the tail (least recently updated) is
// reused. Not safe for concurrent use: the Tracker's lock guards it.
type lru[K comparable] struct {
	idx    map[K]int32
	nodes  [][]node[K] // chunks of chunkLen nodes (fewer when max is small)
	words  [][]int64   // chunks of chunkLen*stride words
	used   int32       // slots handed out so far
	stride int         // words per key
	max    int
	drop   func(k K, w []int64) // if set, called before a key is evicted or removed
	head   int32                // most recently updated; -1 when empty
	tail   int32                // least recently updated; -1 when empty
	free   int32                // removed slots, chained through next; -1 when none
}

type node[K comparable] struct {
	key  K
	last int64 // unix nanoseconds of the last update
	prev int32
	next int32
}

const none int32 = -1

const (
	chunkBits = 10
	chunkLen  = 1 << chunkBits
)

func newLRU[K comparable](max, stride int) *lru[K] {
	return &lru[K]{idx: map[K]int32{}, stride: stride, max: max, head: none, tail: none, free: none}
}

func (l *lru[K]) len() int { return len(l.idx) }

// get returns k's slot.
func (l *lru[K]) get(k K) (int32, bool) {
	i, ok := l.idx[k]
	return i, ok
}

// n returns slot i's node.
func (l *lru[K]) n(i int32) *node[K] { return &l.nodes[i>>chunkBits][i&(chunkLen-1)] }

// w returns the state words of slot i.
func (l *lru[K]) w(i int32) []int64 {
	c := l.words[i>>chunkBits]
	o := int(i&(chunkLen-1)) * l.stride
	return c[o : o+l.stride : o+l.stride]
}

// last returns when slot i was last updated.
func (l *lru[K]) last(i int32) int64 { return l.n(i).last }

// upsert returns k's slot, creating it (with zeroed words) when absent,
// and marks it updated at now: it moves to the head of the list. A new key
// in a full table takes the least recently updated key's slot.
func (l *lru[K]) upsert(k K, now int64) int32 {
	if i, ok := l.idx[k]; ok {
		l.n(i).last = now
		if l.head != i {
			l.unlink(i)
			l.pushFront(i)
		}
		return i
	}
	var i int32
	switch {
	case l.free != none:
		i = l.free
		l.free = l.n(i).next
	case int(l.used) < l.max:
		i = l.used
		l.used++
		if i&(chunkLen-1) == 0 {
			size := min(chunkLen, l.max)
			l.nodes = append(l.nodes, make([]node[K], size))
			l.words = append(l.words, make([]int64, size*l.stride))
		}
	default:
		i = l.tail
		l.unlink(i)
		if l.drop != nil {
			l.drop(l.n(i).key, l.w(i))
		}
		delete(l.idx, l.n(i).key)
	}
	*l.n(i) = node[K]{key: k, last: now}
	clear(l.w(i))
	l.idx[k] = i
	l.pushFront(i)
	return i
}

// remove drops slot i.
func (l *lru[K]) remove(i int32) {
	l.unlink(i)
	if l.drop != nil {
		l.drop(l.n(i).key, l.w(i))
	}
	delete(l.idx, l.n(i).key)
	*l.n(i) = node[K]{prev: none, next: l.free}
	l.free = i
}

// expire drops the keys last updated at or before cutoff, oldest first,
// and returns how many it dropped.
func (l *lru[K]) expire(cutoff int64) int {
	n := 0
	for l.tail != none && l.n(l.tail).last <= cutoff {
		l.remove(l.tail)
		n++
	}
	return n
}

// oldestFirst calls f for every key, least recently updated first.
func (l *lru[K]) oldestFirst(f func(k K, last int64)) {
	for i := l.tail; i != none; i = l.n(i).prev {
		f(l.n(i).key, l.n(i).last)
	}
}

func (l *lru[K]) unlink(i int32) {
	n := l.n(i)
	if n.prev != none {
		l.n(n.prev).next = n.next
	} else {
		l.head = n.next
	}
	if n.next != none {
		l.n(n.next).prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = none, none
}

func (l *lru[K]) pushFront(i int32) {
	n := l.n(i)
	n.prev, n.next = none, l.head
	if l.head != none {
		l.n(l.head).prev = i
	}
	l.head = i
	if l.tail == none {
		l.tail = i
	}
}
