package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxRedisLen bounds cluster.redis.
const maxRedisLen = 1024

// RedisTarget is cluster.redis taken apart.
type RedisTarget struct {
	Addr     string // host:port
	Username string // from the URL, if any
	DB       int
	TLS      bool // rediss://
}

// ParseRedis parses cluster.redis: host:port, redis://[user@]host:port[/db]
// or rediss://. A password in the URL is refused (it belongs in
// password_file) and never shown.
func ParseRedis(s string) (RedisTarget, error) {
	var r RedisTarget
	switch {
	case s == "":
		return r, errors.New("empty (want host:port or redis://host:port)")
	case len(s) > maxRedisLen:
		return r, fmt.Errorf("longer than %d bytes", maxRedisLen)
	case strings.ContainsAny(s, "\x00\r\n "):
		return r, errors.New("contains a NUL byte, a space or a line break")
	}
	if !strings.Contains(s, "://") {
		if err := checkHostPort(s); err != nil {
			return r, err
		}
		if h, _, _ := net.SplitHostPort(s); h == "" {
			return r, errors.New("no host (want host:port)")
		}
		r.Addr = s
		return r, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return r, errors.New("not a redis:// URL (not shown here, it may hold a password)")
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		r.TLS = true
	default:
		return r, fmt.Errorf("scheme %q: want redis or rediss", u.Scheme)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return r, errors.New("holds a password: put it in cluster.password_file (the URL is not shown here)")
		}
		r.Username = u.User.Username()
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return r, errors.New("query or fragment given: set options with the cluster keys instead")
	}
	if u.Hostname() == "" {
		return r, errors.New("no host (want redis://host:port)")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	if err := checkHostPort(host); err != nil {
		return r, err
	}
	r.Addr = host
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 || db > 255 {
			return r, fmt.Errorf("database %q: want 0 to 255", p)
		}
		r.DB = db
	}
	return r, nil
}

// NodeName is cluster.node, or the host name when empty.
func (c *Cluster) NodeName() (string, error) {
	if c.Node != "" {
		return c.Node, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("cluster.node is empty and the host name is unknown: %w", err)
	}
	if !validName(h, "._-") {
		return "", fmt.Errorf("cluster.node is empty and the host name %q is not a valid node name: set cluster.node", h)
	}
	return h, nil
}

func validName(s, extra string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)
		if !ok {
			return false
		}
	}
	return true
}

func (c *Cluster) validate(bad func(key, format string, args ...any)) {
	set := c.Enabled
	if _, err := ParseRedis(c.Redis); err != nil {
		if set {
			bad("cluster.redis", "%v", err)
		}
	}
	if c.PasswordFile != "" && set {
		if err := checkSecretFile(c.PasswordFile); err != nil {
			bad("cluster.password_file", "%v", err)
		}
	}
	if c.TLSCAFile != "" && set {
		if _, err := os.Stat(c.TLSCAFile); err != nil {
			bad("cluster.tls_ca_file", "%v", err)
		}
	}
	if c.Username != "" && !validName(c.Username, "._-@") {
		bad("cluster.username", "%q: letters, digits, '.', '-', '_', '@', at most 64", c.Username)
	}
	if c.Node != "" && !validName(c.Node, "._-") {
		bad("cluster.node", "%q: letters, digits, '.', '-', '_', at most 64", c.Node)
	}
	if !validName(c.KeyPrefix, ":-_") {
		bad("cluster.key_prefix", "%q: letters, digits, ':', '-', '_', 1 to 64", c.KeyPrefix)
	}
	if c.DialTimeout < 100*time.Millisecond || c.DialTimeout > 30*time.Second {
		bad("cluster.dial_timeout", "%s is out of range (want 100ms to 30s)", c.DialTimeout)
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > time.Minute {
		bad("cluster.timeout", "%s is out of range (want 100ms to 60s)", c.Timeout)
	}
}

// clusterWarnings: a cluster without a password, or in plain text over
// the network.
func (c *Config) clusterWarnings() []string {
	cl := &c.Cluster
	if !cl.Enabled {
		return nil
	}
	var w []string
	if cl.PasswordFile == "" {
		w = append(w, "cluster.password_file: empty: whoever can reach this Redis can ban any address or login on every node and hand out relay permits; set requirepass (or an ACL user) and password_file")
	}
	r, err := ParseRedis(cl.Redis)
	if err == nil && !r.TLS && !cl.TLS && !loopbackListen(r.Addr) {
		w = append(w, "cluster.redis: "+r.Addr+" is not a loopback address and tls is off: the password and every ban travel in plain text; use tls = true (or a private network)")
	}
	return w
}
