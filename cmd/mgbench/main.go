// Command mgbench is the load tool for mailgate's doors.
//
// "mgbench dovecot" plays many Dovecot auth policy clients at once: each
// worker holds one keep-alive TCP connection and sends the same HTTP/1.1
// requests Dovecot 2.3 sends (POST URL?command=allow, optionally followed by
// ?command=report, headers and JSON bodies as captured in protocols.md §1.6),
// checks every reply, and prints requests/s and latency percentiles.
//
// "mgbench constant" is the baseline: Go's net/http server answering every
// request with a constant {"status":0,"msg":""}, so the cost of mailgate's
// Dovecot door can be compared with plain Go HTTP on the same machine.
//
// "mgbench nginx" plays nginx's mail proxy asking the auth_http door: a new
// TCP connection per request, GET HTTP/1.0 with the headers captured in
// protocols.md §2.3 (nginx.go). "mgbench dovecot-auth" is a benchmark fake of
// Dovecot's auth service that accepts every password, so the nginx door can
// be loaded without Dovecot's own cost.
//
// "mgbench postfix" plays Postfix's smtpd processes asking the policy
// delegation door: one persistent connection per worker, the attributes
// captured in protocols.md §3.2 (postfix.go).
//
// It only talks to loopback addresses (127.0.0.0/8, ::1, localhost). It is not
// a general HTTP benchmark and does not speak TLS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

const usage = `usage:
  mgbench dovecot --url URL [--concurrency N] [--duration D] [--warmup D] [--api-key K]
                  [--logins N] [--addresses N] [--report] [--timeout D] [--json]
  mgbench constant --listen ADDR
  mgbench nginx --url URL [--concurrency N] [--duration D] [--warmup D] [--secret-header H --secret S]
                [--protocol imap|pop3|smtp] [--password P] [--logins N] [--addresses N] [--timeout D] [--json]
  mgbench dovecot-auth --listen ADDR   (a FAKE Dovecot auth service for benchmarks: accepts every password)
  mgbench postfix [--addr HOST:PORT|unix:PATH] [--concurrency N] [--duration D] [--warmup D] [--sasl] [--relaycheck]
                  [--logins N] [--addresses N] [--timeout D] [--json]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mgbench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("bad usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "dovecot":
		return runDovecot(ctx, args[1:], stdout, stderr)
	case "constant":
		return runConstant(ctx, args[1:], stderr)
	case "nginx":
		return runNginx(ctx, args[1:], stdout, stderr)
	case "dovecot-auth":
		return runDovecotAuth(ctx, args[1:], stderr)
	case "postfix":
		return runPostfix(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
	}
}

func runDovecot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgbench dovecot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "policy URL as in Dovecot's auth_policy_server_url (loopback http only)")
	concurrency := fs.Int("concurrency", 16, fmt.Sprintf("workers, one keep-alive connection each (max %d)", maxConcurrency))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("measured run time (max %s)", maxDuration))
	warmup := fs.Duration("warmup", 0, fmt.Sprintf("unmeasured run time before the measurement (max %s)", maxWarmup))
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout (Dovecot's default is 2s)")
	apiKey := fs.String("api-key", "", "send header X-API-Key: K")
	logins := fs.Uint("logins", 1000, "distinct logins user0@example.test … (max 16777216)")
	addresses := fs.Uint("addresses", 1000, "distinct client addresses 10.0.0.1 … (max 16777214)")
	report := fs.Bool("report", false, "follow every allow call with its report call, as Dovecot does")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *rawURL == "" {
		return fmt.Errorf("--url is required: %w", errUsage)
	}
	t, err := parseTarget(*rawURL)
	if err != nil {
		return err
	}
	if *logins > maxLogins || *addresses > maxAddresses {
		return fmt.Errorf("--logins ≤ %d and --addresses ≤ %d", maxLogins, maxAddresses)
	}
	cfg := &loadConfig{
		target:      t,
		apiKey:      *apiKey,
		concurrency: *concurrency,
		duration:    *duration,
		warmup:      *warmup,
		timeout:     *timeout,
		logins:      uint32(*logins),
		addresses:   uint32(*addresses),
		report:      *report,
	}
	res, err := runLoad(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, *rawURL, cfg, res)
	}
	writeText(stdout, *rawURL, cfg, res)
	return nil
}

func runConstant(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgbench constant", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4999", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if err := checkLoopbackListen(*listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("constant server listening", "addr", ln.Addr().String(), "reply", constantReply)
	return serveConstant(ctx, ln, log)
}

// rps is requests per second over the measured window.
func (r *result) rps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

func writeText(w io.Writer, rawURL string, cfg *loadConfig, r *result) {
	calls := "allow"
	if cfg.report {
		calls = "allow+report"
	}
	fmt.Fprintf(w, "target:      %s (%s)\n", rawURL, calls)
	fmt.Fprintf(w, "client:      %d workers, one keep-alive TCP connection each; GOMAXPROCS %d, %d CPUs shared with the server if local\n",
		cfg.concurrency, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "requests:    %d (allow %d, report %d)\n", r.Requests, r.Allow, r.Report)
	fmt.Fprintf(w, "errors:      %d (connect %d, io %d, http_status %d, body %d)\n",
		r.Errors, r.ErrorsBy[errConnect], r.ErrorsBy[errIO], r.ErrorsBy[errStatus], r.ErrorsBy[errBody])
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "duration:    %s (warmup %s not counted)\n", r.Duration.Round(time.Millisecond), cfg.warmup)
	fmt.Fprintf(w, "requests/s:  %.0f\n", r.rps())
	h := &r.Hist
	fmt.Fprintf(w, "latency:     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, min %s)\n",
		fmtDur(h.percentile(0.50)), fmtDur(h.percentile(0.90)), fmtDur(h.percentile(0.99)),
		fmtDur(h.percentile(0.999)), fmtDur(time.Duration(h.max)), fmtDur(h.mean()), fmtDur(time.Duration(h.min)))
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%dns", d)
	}
}

// timingJSON is what every --json output says about time: the measured
// duration, the rate and the latencies, in microseconds.
type timingJSON struct {
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	RPS       float64 `json:"requests_per_s"`
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p99_9_us"`
	MaxUs     float64 `json:"max_us"`
	MeanUs    float64 `json:"mean_us"`
	MinUs     float64 `json:"min_us"`
}

func timing(h *histogram, duration, warmup time.Duration, rps float64) timingJSON {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return timingJSON{
		DurationS: duration.Seconds(), WarmupS: warmup.Seconds(), RPS: rps,
		P50us: us(h.percentile(0.50)), P90us: us(h.percentile(0.90)), P99us: us(h.percentile(0.99)),
		P999us: us(h.percentile(0.999)), MaxUs: us(time.Duration(h.max)), MeanUs: us(h.mean()), MinUs: us(time.Duration(h.min)),
	}
}

// jsonResult is the --json output; latencies are in microseconds.
type jsonResult struct {
	URL         string            `json:"url"`
	Report      bool              `json:"report"`
	Concurrency int               `json:"concurrency"`
	CPUs        int               `json:"cpus"`
	Requests    uint64            `json:"requests"`
	Allow       uint64            `json:"allow_requests"`
	Reports     uint64            `json:"report_requests"`
	Errors      uint64            `json:"errors"`
	ErrorsBy    map[string]uint64 `json:"errors_by_kind"`
	FirstError  string            `json:"first_error,omitempty"`
	timingJSON
}

func writeJSON(w io.Writer, rawURL string, cfg *loadConfig, r *result) error {
	out := jsonResult{
		URL:         rawURL,
		Report:      cfg.report,
		Concurrency: cfg.concurrency,
		CPUs:        runtime.NumCPU(),
		Requests:    r.Requests,
		Allow:       r.Allow,
		Reports:     r.Report,
		Errors:      r.Errors,
		ErrorsBy:    map[string]uint64{},
		FirstError:  r.FirstError,
		timingJSON:  timing(&r.Hist, r.Duration, cfg.warmup, r.rps()),
	}
	for k, name := range errKindNames {
		out.ErrorsBy[name] = r.ErrorsBy[k]
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
