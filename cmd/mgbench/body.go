package main

import (
	"encoding/base64"
	"strconv"
)

// attempt is one synthetic login as Dovecot would describe it. Everything is
// derived from a sequence number, so a run is reproducible.
type attempt struct {
	login   uint32 // user<login>@example.test
	remote  uint32 // 10.a.b.c, from remote+1
	pwhash  uint16 // 12 bits, like auth_policy_hash_truncate = 12
	session [12]byte
	success bool // report only
}

// splitmix64 is a small, good integer mixer (Steele et al., SplitMix64).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// makeAttempt returns login attempt number seq out of logins distinct logins
// and addresses distinct client addresses. The login cycles through its
// range; the address is a hash of seq, so logins and addresses are not
// paired. The password hash is fixed per login (the same password every time);
// one report in ten says the login failed.
func makeAttempt(seq uint64, logins, addresses uint32) attempt {
	h := splitmix64(seq)
	a := attempt{
		login:   uint32(seq % uint64(logins)),
		remote:  uint32(h % uint64(addresses)),
		success: (h>>32)%10 != 0,
	}
	a.pwhash = uint16(splitmix64(uint64(a.login)^0x5bd1e995) & 0xfff)
	// Dovecot's session ids are 12 bytes of base64 (16 chars); ours encode
	// seq and its hash so every attempt has a distinct one.
	s := splitmix64(h)
	for i := range 8 {
		a.session[i] = byte(s >> (8 * i))
	}
	for i := range 4 {
		a.session[8+i] = byte(seq >> (8 * i))
	}
	return a
}

const hexDigits = "0123456789abcdef"

// appendBody appends the JSON body Dovecot 2.3 sends for this attempt with the
// default auth_policy_request_attributes (protocols.md §1.2 and §1.6): keys
// sorted, all template values strings, then for report "success" and
// "policy_reject", and always "tls" last. Every value here is plain ASCII
// that needs no JSON escaping.
func appendBody(dst []byte, a *attempt, report bool) []byte {
	dst = append(dst, `{"device_id":"","login":"user`...)
	dst = strconv.AppendUint(dst, uint64(a.login), 10)
	dst = append(dst, `@example.test","protocol":"imap","pwhash":"`...)
	dst = append(dst, '0', hexDigits[a.pwhash>>8&0xf], hexDigits[a.pwhash>>4&0xf], hexDigits[a.pwhash&0xf])
	dst = append(dst, `","remote":"10.`...)
	r := a.remote + 1 // never 10.0.0.0
	dst = strconv.AppendUint(dst, uint64(r>>16&0xff), 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(r>>8&0xff), 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(r&0xff), 10)
	dst = append(dst, `","session_id":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, a.session[:])
	dst = append(dst, '"')
	if report {
		if a.success {
			dst = append(dst, `,"success":true`...)
		} else {
			dst = append(dst, `,"success":false`...)
		}
		dst = append(dst, `,"policy_reject":false`...)
	}
	dst = append(dst, `,"tls":false}`...)
	return dst
}
