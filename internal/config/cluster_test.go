package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRedis(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RedisTarget
	}{
		{"127.0.0.1:6379", RedisTarget{Addr: "127.0.0.1:6379"}},
		{"redis://10.0.0.5", RedisTarget{Addr: "10.0.0.5:6379"}},
		{"redis://mailgate@[2001:db8::5]:6380/2", RedisTarget{Addr: "[2001:db8::5]:6380", Username: "mailgate", DB: 2}},
		{"rediss://redis.example.net:6380", RedisTarget{Addr: "redis.example.net:6380", TLS: true}},
	} {
		got, err := ParseRedis(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRedis(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "redis://", ":6379", "http://x:1", "redis://u:topsecret@h:1", "redis://h:1/300", "redis://h:1/?x=1", "h", "a b:1", strings.Repeat("a", 2000)} {
		_, err := ParseRedis(in)
		if err == nil {
			t.Errorf("ParseRedis(%q): no error", in)
		} else if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("ParseRedis(%q): the error shows the password: %v", in, err)
		}
	}
}

func TestClusterWarnings(t *testing.T) {
	c := Default()
	c.Cluster.Enabled = true
	c.Cluster.Redis = "10.0.0.5:6379"
	w := strings.Join(c.clusterWarnings(), "\n")
	if !strings.Contains(w, "cluster.password_file: empty") || !strings.Contains(w, "plain text") {
		t.Errorf("warnings for an open, remote Redis without TLS:\n%s", w)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	c.Cluster.PasswordFile, c.Cluster.TLS = pw, true
	if w := c.clusterWarnings(); len(w) != 0 {
		t.Errorf("warnings with a password and TLS: %q", w)
	}
	c.Cluster.Enabled = false
	c.Cluster.PasswordFile = ""
	if w := c.clusterWarnings(); len(w) != 0 {
		t.Errorf("warnings with the cluster off: %q", w)
	}
}

func FuzzParseRedis(f *testing.F) {
	for _, s := range []string{"127.0.0.1:6379", "redis://u@h:1/2", "rediss://h", "redis://u:p@h:1", "redis://[::1]:1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRedis(s)
		if err != nil {
			return
		}
		if h, _, _ := net.SplitHostPort(r.Addr); h == "" || checkHostPort(r.Addr) != nil || r.DB < 0 || r.DB > 255 {
			t.Fatalf("%q: accepted %+v", s, r)
		}
	})
}
