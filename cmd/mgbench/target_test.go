package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		url       string
		dial      string
		allowURI  string
		reportURI string
		auth      string
		err       string // substring; "" means success
	}{
		{url: "http://127.0.0.1:4001/", dial: "127.0.0.1:4001", allowURI: "/?command=allow", reportURI: "/?command=report"},
		{url: "http://127.0.0.1:4001", dial: "127.0.0.1:4001", allowURI: "/?command=allow"},
		{url: "http://127.9.8.7/policy", dial: "127.9.8.7:80", allowURI: "/policy?command=allow", reportURI: "/policy?command=report"},
		{url: "http://localhost:4001/p", dial: "127.0.0.1:4001", allowURI: "/p?command=allow"},
		{url: "http://LocalHost:4001/p", dial: "127.0.0.1:4001", allowURI: "/p?command=allow"},
		{url: "http://[::1]:4001/", dial: "[::1]:4001", allowURI: "/?command=allow"},
		{url: "http://[::ffff:127.0.0.1]:4001/", dial: "127.0.0.1:4001", allowURI: "/?command=allow"},
		// Dovecot: a URL ending in & gets only command=... (protocols.md §1.1).
		{url: "http://127.0.0.1:4001/p?tenant=a&", dial: "127.0.0.1:4001", allowURI: "/p?tenant=a&command=allow", reportURI: "/p?tenant=a&command=report"},
		{url: "http://127.0.0.1:4001/p?tenant=a", dial: "127.0.0.1:4001", allowURI: "/p?tenant=a&command=allow"},
		{url: "http://user:pa%3Ass@127.0.0.1:4001/", dial: "127.0.0.1:4001", allowURI: "/?command=allow", auth: "Basic dXNlcjpwYTpzcw=="},

		{url: "http://10.0.0.1:4001/", err: "not a loopback address"},
		{url: "http://192.168.1.1/", err: "not a loopback address"},
		{url: "http://0.0.0.0:4001/", err: "not a loopback address"},
		{url: "http://[::]:4001/", err: "not a loopback address"},
		{url: "http://[::ffff:10.0.0.1]:4001/", err: "not a loopback address"},
		{url: "http://[fe80::1%25lo]:4001/", err: "not a loopback address"},
		{url: "http://example.com/", err: "not a loopback address"},
		{url: "http://localhost.example.com/", err: "not a loopback address"},
		{url: "http://127.0.0.1.nip.io/", err: "not a loopback address"},
		{url: "https://127.0.0.1:4001/", err: "only http"},
		{url: "//127.0.0.1:4001/", err: "scheme"},
		{url: "ftp://127.0.0.1/", err: "only http"},
		{url: "http:///p", err: "no host"},
		{url: "http://127.0.0.1:0/", err: "bad port"},
		{url: "http://127.0.0.1:4001/#x", err: "fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := parseTarget(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				if tt.err == "not a loopback address" && !errors.Is(err, errNotLoopback) {
					t.Fatalf("err = %v does not wrap errNotLoopback", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.dial.String() != tt.dial {
				t.Errorf("dial = %s, want %s", got.dial, tt.dial)
			}
			if got.allowURI != tt.allowURI {
				t.Errorf("allowURI = %q, want %q", got.allowURI, tt.allowURI)
			}
			if tt.reportURI != "" && got.reportURI != tt.reportURI {
				t.Errorf("reportURI = %q, want %q", got.reportURI, tt.reportURI)
			}
			if got.authHeader != tt.auth {
				t.Errorf("authHeader = %q, want %q", got.authHeader, tt.auth)
			}
		})
	}
}

func TestCheckLoopbackListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:4999":  true,
		"127.0.0.1:0":     true,
		"[::1]:4999":      true,
		"localhost:4999":  true,
		":4999":           false,
		"0.0.0.0:4999":    false,
		"[::]:4999":       false,
		"10.1.1.1:4999":   false,
		"127.0.0.1":       false,
		"mail.example:25": false,
	} {
		err := checkLoopbackListen(addr)
		if (err == nil) != ok {
			t.Errorf("checkLoopbackListen(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}
