package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// target is a parsed, checked --url: where to connect and what to put in the
// request line and headers.
type target struct {
	dial       netip.AddrPort // always a loopback address
	host       string         // Host header, as in the URL
	allowURI   string         // request-target for command=allow
	reportURI  string         // request-target for command=report
	authHeader string         // "Basic ..." when the URL has user:pass@, else ""
}

// errNotLoopback is returned for a --url or --listen address outside
// 127.0.0.0/8 and ::1: this tool must never send traffic anywhere else.
var errNotLoopback = errors.New("not a loopback address (only 127.0.0.0/8, ::1 and localhost are allowed)")

// parseTarget parses a Dovecot auth_policy_server_url the way Dovecot uses it
// (protocols.md §1.1): "?command=allow" is appended, or only "command=allow"
// when the URL ends in "&"; user:pass@ becomes HTTP basic auth. Only plain
// http to a loopback host is accepted.
func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return target{}, fmt.Errorf("url %q: scheme %q not supported (only http)", raw, u.Scheme)
	}
	if u.Host == "" {
		return target{}, fmt.Errorf("url %q: no host", raw)
	}
	if u.Fragment != "" {
		return target{}, fmt.Errorf("url %q: fragment not allowed", raw)
	}
	addr, err := loopbackAddr(u.Hostname())
	if err != nil {
		return target{}, fmt.Errorf("url %q: host %q: %w", raw, u.Hostname(), err)
	}
	port := uint16(80)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return target{}, fmt.Errorf("url %q: bad port %q", raw, p)
		}
		port = uint16(n)
	}
	t := target{
		dial: netip.AddrPortFrom(addr, port),
		host: u.Host,
	}
	base := u.EscapedPath()
	if base == "" {
		base = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		base += "?" + u.RawQuery
	}
	sep := "?"
	switch {
	case strings.HasSuffix(base, "&"):
		sep = ""
	case strings.Contains(base, "?"):
		sep = "&" // Dovecot would append "?" and make a broken URL; be kind
	}
	t.allowURI = base + sep + "command=allow"
	t.reportURI = base + sep + "command=report"
	if u.User != nil {
		pass, _ := u.User.Password()
		t.authHeader = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	return t, nil
}

// loopbackAddr maps host to the loopback address to connect to: "localhost"
// (any case) is 127.0.0.1 without asking a resolver; an IP literal must be
// loopback (an IPv4-mapped IPv6 address counts as its IPv4 address). Anything
// else, including other names, is refused.
func loopbackAddr(host string) (netip.Addr, error) {
	if strings.EqualFold(host, "localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, errNotLoopback
	}
	a = a.Unmap()
	if a.Zone() != "" || !a.IsLoopback() {
		return netip.Addr{}, errNotLoopback
	}
	return a, nil
}

// checkLoopbackListen checks a --listen host:port.
func checkLoopbackListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if _, err := loopbackAddr(host); err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	return nil
}
