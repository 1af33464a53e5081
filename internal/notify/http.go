package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// The webhook's signature headers. The signature is
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)), with
// timestamp the X-Mailgate-Timestamp header (Unix seconds): a receiver
// recomputes it over the raw body and refuses a stale timestamp, so a
// captured request cannot be replayed later.
const (
	HeaderSignature = "X-Mailgate-Signature"
	HeaderTimestamp = "X-Mailgate-Timestamp"
	HeaderEvent     = "X-Mailgate-Event"
)

// Sign returns the signature header's value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is the signature of body at ts under secret
// (in constant time), and ts within maxAge of now.
func Verify(secret []byte, ts string, body []byte, sig string, now time.Time, maxAge time.Duration) bool {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(t, 0)); d > maxAge || d < -maxAge {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, t, body)), []byte(sig))
}

// HTTPKind is what an HTTPTarget posts.
type HTTPKind int

const (
	Webhook      HTTPKind = iota // one JSON object per event, signed
	Alertmanager                 // a JSON array of one alert, POST /api/v2/alerts
)

// maxResponse is how much of a receiver's answer is read (and kept for
// the error message).
const maxResponse = 4 << 10

// HTTPTarget posts events to a URL.
type HTTPTarget struct {
	TargetName string
	Kind       HTTPKind
	URL        string
	Secret     []byte // Webhook: the HMAC key; never logged
	Events     []Kind // empty = all
	Timeout    time.Duration
	Policy     RetryPolicy
	Queue      int
	Host       string        // the host label/field
	ResolveIn  time.Duration // Alertmanager: endsAt = startsAt + ResolveIn (a ban: its end)
	Client     *http.Client  // nil: one with Timeout that follows no redirect
}

func (h *HTTPTarget) Name() string       { return h.TargetName }
func (h *HTTPTarget) Retry() RetryPolicy { return h.Policy }
func (h *HTTPTarget) QueueLen() int      { return h.Queue }
func (h *HTTPTarget) Wants(k Kind) bool  { return wants(h.Events, k) }
func wants(events []Kind, k Kind) bool {
	return k == Test || len(events) == 0 || slices.Contains(events, k)
}
func (h *HTTPTarget) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	// A redirect would send the signed body where the config does not
	// say; it is an error instead.
	return &http.Client{Timeout: h.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Body is what the target posts for e.
func (h *HTTPTarget) Body(e *Event) ([]byte, error) {
	if h.Kind == Alertmanager {
		return json.Marshal([]AlertJSON{h.alert(e)})
	}
	return json.Marshal(e.toJSON(h.Host))
}

// AlertJSON is one alert of Alertmanager's API v2 (POST /api/v2/alerts,
// https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
// postableAlert).
type AlertJSON struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertNames are the alertname labels, one per kind.
func alertName(k Kind) string {
	switch k {
	case LoginBanned:
		return "MailgateLoginBanned"
	case SendLimit:
		return "MailgateSendLimit"
	case NewCountry:
		return "MailgateNewCountry"
	case SharedPermit:
		return "MailgateSharedPermit"
	case FirewallFailed:
		return "MailgateFirewallFailed"
	case DNSBLStale:
		return "MailgateDNSBLStale"
	case GeoIPStale:
		return "MailgateGeoIPStale"
	}
	return "MailgateTest"
}

func severity(k Kind) string {
	switch k {
	case FirewallFailed, SendLimit:
		return "critical"
	case Test:
		return "none"
	}
	return "warning"
}

func (h *HTTPTarget) alert(e *Event) AlertJSON {
	labels := map[string]string{"alertname": alertName(e.Kind), "event": string(e.Kind), "severity": severity(e.Kind), "service": "mailgate"}
	if h.Host != "" {
		labels["instance"] = h.Host
	}
	if s := e.subject(); s != "" {
		labels["subject"] = s
	}
	if e.Login != "" {
		labels["login"] = e.Login
	}
	ann := map[string]string{"summary": e.Title(), "description": e.Text()}
	if e.Addr.IsValid() {
		ann["ip"] = e.Addr.String()
	}
	if e.Country != "" {
		ann["country"] = e.Country
	}
	end := e.Time.Add(h.ResolveIn)
	if e.Kind == LoginBanned && e.Until.After(e.Time) {
		end = e.Until
	}
	return AlertJSON{Labels: labels, Annotations: ann, StartsAt: e.Time.UTC(), EndsAt: end.UTC()}
}

// Deliver posts e once. A 2xx answer is success; 408, 429 and 5xx are
// retried; any other answer is Permanent.
func (h *HTTPTarget) Deliver(ctx context.Context, e *Event) error {
	body, err := h.Body(e)
	if err != nil {
		return &Permanent{fmt.Errorf("%s: encoding: %w", h.TargetName, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return &Permanent{fmt.Errorf("%s: %w", h.TargetName, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailgate")
	if h.Kind == Webhook {
		req.Header.Set(HeaderEvent, string(e.Kind))
		if len(h.Secret) > 0 {
			ts := time.Now().Unix() // the edge: the moment of sending
			req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
			req.Header.Set(HeaderSignature, Sign(h.Secret, ts, body))
		}
	}
	resp, err := h.client().Do(req)
	if err != nil {
		// The error names the URL, never the secret (a header).
		return fmt.Errorf("%s: %w", h.TargetName, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("%s: %s answered %s: %q", h.TargetName, h.URL, resp.Status, cleanString(string(msg)))
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return err
	}
	return &Permanent{err}
}

// asPermanent is errors.As for *Permanent.
func asPermanent(err error, p **Permanent) bool { return errors.As(err, p) }
