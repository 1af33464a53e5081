package password

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/trustelem/zxcvbn/frequency"
)

// Generation limits.
const (
	DefaultLength = 16
	MaxLength     = 256
	DefaultWords  = 5
	MinWords      = 3
	MaxWords      = 20
	// maxTries bounds the attempts to make a password that passes; with
	// the alphabets below a try fails with a tiny probability, so this is
	// reached only by a policy no generated password can pass (a
	// breached list that lists them all, or a contradiction).
	maxTries = 1000
)

// Character classes of generated passwords. Letters and digits that look
// alike (l 1 I O 0) are left out, and the symbols are ones that need no
// quoting in a shell, a URL's user part or a config file.
const (
	genLower  = "abcdefghijkmnopqrstuvwxyz"
	genUpper  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	genDigit  = "23456789"
	genSymbol = "-_.+!%=?~"
)

// Generator makes passwords that pass a Policy, from crypto/rand.
type Generator struct {
	p     *Policy
	words []string
}

// NewGenerator returns a generator for passwords that pass p.
func NewGenerator(p *Policy) *Generator {
	return &Generator{p: p, words: WordList()}
}

// WordList is the passphrase word list: the 8192 most frequent words of 4
// to 8 letters a-z in the English Wikipedia frequency list that ships
// with zxcvbn (github.com/trustelem/zxcvbn, MIT licence, like the
// Dropbox zxcvbn it is ported from), so mailgate ships no list of its
// own. 8192 words give 13 bits each: 5 words are 65 bits.
func WordList() []string {
	src := frequency.FrequencyLists["english_wikipedia"]
	out := make([]string, 0, wordCount)
	for _, w := range src {
		if len(w) < 4 || len(w) > 8 || !isLowerASCII(w) {
			continue
		}
		out = append(out, w)
		if len(out) == wordCount {
			break
		}
	}
	return out
}

const wordCount = 8192

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

// ErrCannotGenerate is returned when no try passed the policy.
var ErrCannotGenerate = errors.New("password: no generated password passed the policy (is the breached list or min_length contradictory?)")

// Chars makes a password of n characters (0 = DefaultLength; at least
// the policy's MinLength) from all four classes, one of each at least,
// that passes the policy for login.
func (g *Generator) Chars(n int, login string) (string, error) {
	if n == 0 {
		n = max(DefaultLength, g.p.MinLength)
	}
	if n < g.p.MinLength || n < 4 {
		return "", fmt.Errorf("password: length %d is below the policy's minimum of %d", n, max(g.p.MinLength, 4))
	}
	if n > MaxLength {
		return "", fmt.Errorf("password: length %d is above %d", n, MaxLength)
	}
	all := genLower + genUpper + genDigit + genSymbol
	b := make([]byte, n)
	for range maxTries {
		for i := range b {
			b[i] = all[randInt(len(all))]
		}
		// One of each class at distinct random places.
		perm := randPerm(n)
		for i, set := range []string{genLower, genUpper, genDigit, genSymbol} {
			b[perm[i]] = set[randInt(len(set))]
		}
		pw := string(b)
		if !g.p.Weak(pw, login) {
			return pw, nil
		}
	}
	return "", ErrCannotGenerate
}

// Words makes a passphrase of n words (0 = DefaultWords), each
// capitalised, joined by '-', with one digit after a random word, so it
// has four classes; it is lengthened by a word while shorter than the
// policy's MinLength.
func (g *Generator) Words(n int, login string) (string, error) {
	if n == 0 {
		n = DefaultWords
	}
	if n < MinWords || n > MaxWords {
		return "", fmt.Errorf("password: %d words; choose %d to %d", n, MinWords, MaxWords)
	}
	for range maxTries {
		ws := make([]string, n)
		for i := range ws {
			w := g.words[randInt(len(g.words))]
			ws[i] = strings.ToUpper(w[:1]) + w[1:]
		}
		d := randInt(n)
		ws[d] += string(genDigit[randInt(len(genDigit))])
		pw := strings.Join(ws, "-")
		for len(pw) < g.p.MinLength && len(pw) < MaxLen/2 {
			w := g.words[randInt(len(g.words))]
			pw += "-" + strings.ToUpper(w[:1]) + w[1:]
		}
		if !g.p.Weak(pw, login) {
			return pw, nil
		}
	}
	return "", ErrCannotGenerate
}

// randInt is a uniform integer in [0, n) from crypto/rand.
func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		// crypto/rand does not fail on Linux ≥ 3.17 (getrandom); if it
		// did, no password may be made from a weaker source.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return int(v.Int64())
}

// randPerm is a random permutation of [0, n) (Fisher–Yates).
func randPerm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := randInt(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
