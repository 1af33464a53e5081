package main

import (
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonKeys returns the top-level keys of the JSON object b in order, and
// fails unless every value is a string, except the booleans Dovecot adds.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		key := tok.(string)
		keys = append(keys, key)
		v, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch key {
		case "tls", "success", "policy_reject":
			if _, ok := v.(bool); !ok {
				t.Fatalf("%s: %v is not a boolean in %s", key, v, b)
			}
		default:
			if _, ok := v.(string); !ok {
				t.Fatalf("%s: %v is not a string in %s", key, v, b)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("trailing data after object: %s", b)
	}
	return keys
}

func TestAppendBodyShape(t *testing.T) {
	// Dovecot sorts the template keys; report inserts success and
	// policy_reject before tls, which is always last (protocols.md §1.2, §1.6).
	template := []string{"device_id", "login", "protocol", "pwhash", "remote", "session_id"}
	if !slices.IsSorted(template) {
		t.Fatal("template keys not sorted")
	}
	wantAllow := append(slices.Clone(template), "tls")
	wantReport := append(slices.Clone(template), "success", "policy_reject", "tls")

	const logins, addresses = 37, 1000
	for seq := range uint64(5000) {
		a := makeAttempt(seq, logins, addresses)
		allow := appendBody(nil, &a, false)
		if keys := jsonKeys(t, allow); !slices.Equal(keys, wantAllow) {
			t.Fatalf("allow keys %v, want %v", keys, wantAllow)
		}
		report := appendBody(nil, &a, true)
		if keys := jsonKeys(t, report); !slices.Equal(keys, wantReport) {
			t.Fatalf("report keys %v, want %v", keys, wantReport)
		}
		// The report is the allow body plus success and policy_reject.
		if !strings.HasPrefix(string(report), strings.TrimSuffix(string(allow), `,"tls":false}`)) {
			t.Fatalf("report %s does not extend allow %s", report, allow)
		}
	}
}

func TestAppendBodyExact(t *testing.T) {
	a := attempt{login: 123, remote: 0x010203 - 1, pwhash: 0x6ca, session: [12]byte{0xcc, 0x75, 0x3b, 0x47, 0xd4, 0x60, 0x58, 0xb6, 0x7f, 0, 0, 1}}
	got := string(appendBody(nil, &a, false))
	want := `{"device_id":"","login":"user123@example.test","protocol":"imap","pwhash":"06ca","remote":"10.1.2.3","session_id":"zHU7R9RgWLZ/AAAB","tls":false}`
	if got != want {
		t.Fatalf("allow body\n got %s\nwant %s", got, want)
	}
	a.success = false
	got = string(appendBody(nil, &a, true))
	want = `{"device_id":"","login":"user123@example.test","protocol":"imap","pwhash":"06ca","remote":"10.1.2.3","session_id":"zHU7R9RgWLZ/AAAB","success":false,"policy_reject":false,"tls":false}`
	if got != want {
		t.Fatalf("report body\n got %s\nwant %s", got, want)
	}
}

func TestMakeAttemptSequence(t *testing.T) {
	const logins, addresses = 50, 200
	loginSet := map[uint32]bool{}
	remoteSet := map[uint32]bool{}
	sessions := map[[12]byte]bool{}
	pw := map[uint32]uint16{}
	fails := 0
	const n = 20000
	for seq := range uint64(n) {
		a := makeAttempt(seq, logins, addresses)
		if b := makeAttempt(seq, logins, addresses); a != b {
			t.Fatalf("seq %d not deterministic: %+v vs %+v", seq, a, b)
		}
		if a.login >= logins || a.remote >= addresses || a.pwhash > 0xfff {
			t.Fatalf("seq %d out of range: %+v", seq, a)
		}
		if p, ok := pw[a.login]; ok && p != a.pwhash {
			t.Fatalf("login %d has two password hashes", a.login)
		}
		pw[a.login] = a.pwhash
		loginSet[a.login] = true
		remoteSet[a.remote] = true
		sessions[a.session] = true
		if !a.success {
			fails++
		}
	}
	if len(loginSet) != logins || len(remoteSet) != addresses {
		t.Fatalf("saw %d logins and %d addresses, want %d and %d", len(loginSet), len(remoteSet), logins, addresses)
	}
	if len(sessions) != n {
		t.Fatalf("%d distinct sessions in %d attempts", len(sessions), n)
	}
	if fails < n/20 || fails > n/5 {
		t.Fatalf("%d failed reports in %d, want about 10%%", fails, n)
	}
	// The highest address is still a valid 10/8 host address.
	a := attempt{remote: maxAddresses - 1}
	if b := string(appendBody(nil, &a, false)); !strings.Contains(b, `"remote":"10.255.255.254"`) {
		t.Fatalf("highest address: %s", b)
	}
}

func TestBuildRequestWire(t *testing.T) {
	tg, err := parseTarget("http://127.0.0.1:8180/policy")
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{cfg: &loadConfig{target: tg, apiKey: "myapikey"}}
	a := attempt{login: 7, remote: 0, pwhash: 0xabc}
	now := time.Date(2026, 11, 22, 2, 31, 44, 0, time.UTC)
	w.buildRequest(&a, false, now)
	body := `{"device_id":"","login":"user7@example.test","protocol":"imap","pwhash":"0abc","remote":"10.0.0.1","session_id":"AAAAAAAAAAAAAAAA","tls":false}`
	want := "POST /policy?command=allow HTTP/1.1\r\n" +
		"Host: 127.0.0.1:8180\r\n" +
		"Date: Sun, 22 Nov 2026 02:31:44 GMT\r\n" +
		"User-Agent: dovecot/auth-policy-client\r\n" +
		"Content-Length: 143\r\n" +
		"Connection: Keep-Alive\r\n" +
		"Content-Type: application/json\r\n" +
		"X-API-Key: myapikey\r\n" +
		"\r\n" + body
	if len(body) != 143 {
		t.Fatalf("body is %d bytes", len(body))
	}
	if got := string(w.req); got != want {
		t.Fatalf("request\n got %q\nwant %q", got, want)
	}
	// A report on the same worker reuses the buffers.
	w.buildRequest(&a, true, now.Add(time.Second))
	if got := string(w.req); !strings.HasPrefix(got, "POST /policy?command=report HTTP/1.1\r\n") ||
		!strings.Contains(got, "Date: Sun, 22 Nov 2026 02:31:45 GMT\r\n") ||
		!strings.HasSuffix(got, `"success":true,"policy_reject":false,"tls":false}`) && !strings.HasSuffix(got, `"success":false,"policy_reject":false,"tls":false}`) {
		t.Fatalf("report request %q", got)
	}
}

func TestBuildRequestDoesNotAllocate(t *testing.T) {
	tg, _ := parseTarget("http://u:p@localhost:4001/")
	w := &worker{cfg: &loadConfig{target: tg, apiKey: "k"}}
	now := time.Now()
	a := makeAttempt(1, 10, 10)
	w.buildRequest(&a, true, now) // grow the buffers once
	if n := testing.AllocsPerRun(100, func() { w.buildRequest(&a, true, now) }); n != 0 {
		t.Fatalf("buildRequest allocates %v times", n)
	}
}
