package dovecot

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mailgate/internal/policy"
)

// FuzzParseRequest feeds arbitrary bodies to the request parser and to
// the whole handler. Neither may panic; an accepted body must be valid
// JSON with a usable (unmapped, zoneless) remote; every reply is 200 with
// a JSON body or 400/413. The seed corpus is in
// testdata/fuzz/FuzzParseRequest (the bodies of protocols.md §1.6 and
// edge cases).
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(aliceBody))
	f.Add([]byte(aliceOK))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body)
		if err == nil {
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			if req.Remote.IsValid() && (req.Remote.Is4In6() || req.Remote.Zone() != "") {
				t.Fatalf("remote %v not normalized", req.Remote)
			}
		} else if len(err.Error()) > 1000 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}

		checkAgainstEncodingJSON(t, body, req, err)

		f := &fakeDecider{verdict: policy.Verdict{Action: policy.Deny}, msg: string(body)}
		h := NewHandler(Config{MaxBodyBytes: 4096}, f, nil, nil)
		for _, cmd := range []string{"allow", "report"} {
			r := httptest.NewRequest(http.MethodPost, "/?command="+cmd, strings.NewReader(string(body)))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			switch w.Code {
			case 200:
				if !json.Valid(w.Body.Bytes()) {
					t.Fatalf("%s: reply is not JSON: %q", cmd, w.Body)
				}
				if err != nil {
					t.Fatalf("%s: 200 for a body the parser refused: %v", cmd, err)
				}
			case 400, 413:
			default:
				t.Fatalf("%s: status %d", cmd, w.Code)
			}
		}
	})
}

// referenceRequest is the body read by encoding/json, the reference the
// hand-written reader (json.go) must agree with.
type referenceRequest struct {
	Login        string `json:"login"`
	Remote       string `json:"remote"`
	Protocol     string `json:"protocol"`
	PwHash       string `json:"pwhash"`
	SessionID    string `json:"session_id"`
	DeviceID     string `json:"device_id"`
	FailType     string `json:"fail_type"`
	Local        string `json:"local"`
	LPort        string `json:"lport"`
	TLS          bool   `json:"tls"`
	Success      *bool  `json:"success"`
	PolicyReject bool   `json:"policy_reject"`
}

var knownKeys = []string{"login", "remote", "protocol", "pwhash", "session_id", "device_id", "fail_type", "local", "lport", "tls", "success", "policy_reject"}

// checkAgainstEncodingJSON compares readObject with encoding/json: both
// accept or both refuse the body, and accepted values are equal. Bodies
// where they differ by design are skipped: keys that match a known key
// only case-insensitively (encoding/json matches them) and nesting deeper
// than maxDepth. (A null after a value for "success" resets encoding/json's
// pointer but not hasSuccess; that one comparison is skipped for bodies
// with a null.)
func checkAgainstEncodingJSON(t *testing.T, body []byte, req Request, err error) {
	var w wireFields
	ourErr := readObject(body, &w)
	var ref referenceRequest
	refErr := json.Unmarshal(body, &ref)
	if refErr == nil && (bytes.TrimLeft(body, " \t\r\n") == nil || bytes.TrimLeft(body, " \t\r\n")[0] != '{') {
		refErr = errors.New("not an object") // null decodes into a struct without error
	}
	if json.Valid(body) {
		var keys map[string]json.RawMessage
		if json.Unmarshal(body, &keys) == nil {
			for k := range keys {
				for _, kk := range knownKeys {
					if k != kk && strings.EqualFold(k, kk) {
						return
					}
				}
			}
		}
	}
	if bytes.Count(body, []byte("["))+bytes.Count(body, []byte("{")) > maxDepth/2 {
		return
	}
	if (ourErr == nil) != (refErr == nil) {
		t.Fatalf("body %q: readObject err %v, encoding/json err %v", body, ourErr, refErr)
	}
	if ourErr != nil {
		return
	}
	gotFields := [...]string{w.login, w.remote, w.protocol, w.pwhash, w.sessionID, w.deviceID, w.failType, w.local, w.lport}
	refFields := [...]string{ref.Login, ref.Remote, ref.Protocol, ref.PwHash, ref.SessionID, ref.DeviceID, ref.FailType, ref.Local, ref.LPort}
	if gotFields != refFields {
		t.Fatalf("body %q: fields %q, encoding/json says %q", body, gotFields, refFields)
	}
	if w.tls != ref.TLS || w.policyReject != ref.PolicyReject || (ref.Success != nil && *ref.Success != w.success) {
		t.Fatalf("body %q: tls %v policy_reject %v success %v, encoding/json says %v %v %v", body, w.tls, w.policyReject, w.success, ref.TLS, ref.PolicyReject, ref.Success)
	}
	if bytes.Contains(body, []byte("null")) {
		return
	}
	if (ref.Success != nil) != w.hasSuccess {
		t.Fatalf("body %q: hasSuccess %v", body, w.hasSuccess)
	}
}
