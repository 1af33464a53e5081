package console

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestUsersFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	h, err := hashWith([]byte("s3cret password"), 64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetUser(p, "bob", h); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	u := NewUsers(p)
	if ok, err := u.Check("bob", []byte("s3cret password")); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	for _, c := range [][2]string{{"bob", "s3cret passworD"}, {"carol", "s3cret password"}, {"bob", ""}} {
		if ok, _ := u.Check(c[0], []byte(c[1])); ok {
			t.Errorf("%q signs in", c)
		}
	}
	// A user removed counts at the next sign-in.
	if existed, err := SetUser(p, "bob", ""); !existed || err != nil {
		t.Fatal(existed, err)
	}
	if ok, _ := u.Check("bob", []byte("s3cret password")); ok {
		t.Error("a removed user signs in")
	}
	if names, _ := ListUsers(p); len(names) != 0 {
		t.Errorf("users %q", names)
	}
	// The file holds no password, only its hash.
	b, _ := os.ReadFile(p)
	if strings.Contains(string(b), "s3cret") {
		t.Error("password in the users file")
	}
}

// As root, a new users file gets its directory's owner (the daemon's
// user must read it), and a replaced one keeps its owner.
func TestUsersFileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "users")
	h, _ := hashWith([]byte("pw"), 64, 1, 1)
	owner := func() (int, int) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid)
	}
	if _, err := SetUser(p, "bob", h); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(); u != 4242 || g != 4343 {
		t.Errorf("new file owned by %d:%d, want the directory's 4242:4343", u, g)
	}
	os.Chown(p, 4444, 4545)
	if _, err := SetUser(p, "carol", h); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(); u != 4444 || g != 4545 {
		t.Errorf("replaced file owned by %d:%d, want its old 4444:4545", u, g)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword([]byte("a long enough password"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Errorf("hash %s", h)
	}
	a, err := parseHash(h)
	if err != nil || !a.matches([]byte("a long enough password")) || a.matches([]byte("a long enough passwore")) {
		t.Fatal("hash does not verify", err)
	}
}

func TestParseUsersErrors(t *testing.T) {
	h, _ := hashWith([]byte("pw"), 64, 1, 1)
	for _, c := range []string{"bob", "Bob:" + h, "bob:$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "bob:" + h + "\nbob:" + h, TokenUser + ":" + h, "bob:plain"} {
		_, err := ParseUsers([]byte(c))
		if err == nil {
			t.Errorf("%q parsed", c)
			continue
		}
		if strings.Contains(err.Error(), "$argon2id") {
			t.Errorf("%q: the error quotes the hash: %v", c, err)
		}
	}
}

func FuzzParseUsers(f *testing.F) {
	h, _ := hashWith([]byte("pw"), 64, 1, 1)
	f.Add([]byte("# users\nbob:" + h + "\n"))
	f.Add([]byte("bob:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := ParseUsers(b)
		if err != nil {
			return
		}
		for name, hash := range users {
			if CheckUserName(name) != nil {
				t.Fatalf("bad name %q accepted", name)
			}
			if _, err := parseHash(hash); err != nil {
				t.Fatalf("bad hash accepted: %v", err)
			}
		}
	})
}

// BenchmarkCheck is one sign-in's password check with the parameters
// HashPassword writes (64 MiB, 3 passes).
func BenchmarkCheck(b *testing.B) {
	p := filepath.Join(b.TempDir(), "users")
	h, err := HashPassword([]byte("a long enough password"))
	if err != nil {
		b.Fatal(err)
	}
	SetUser(p, "bob", h)
	u := NewUsers(p)
	for b.Loop() {
		u.Check("bob", []byte("a long enough password"))
	}
}
