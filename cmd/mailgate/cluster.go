package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/cluster"
	"mailgate/internal/config"
	"mailgate/internal/metrics"
	"mailgate/internal/postfix"
	"mailgate/internal/sendlimit"
)

// newClusterNode builds the node of [cluster]; Run connects it. The
// password is read here and never logged.
func newClusterNode(c config.Cluster, t *abuse.Tracker, hooks cluster.Hooks, started time.Time, log *slog.Logger) (*cluster.Node, error) {
	r, err := config.ParseRedis(c.Redis)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis: %w", err)
	}
	name, err := c.NodeName()
	if err != nil {
		return nil, err
	}
	opt := cluster.Options{
		Addr: r.Addr, Username: r.Username, DB: r.DB,
		DialTimeout: c.DialTimeout, Timeout: c.Timeout,
		Node: name, Prefix: c.KeyPrefix, Version: version, Started: started,
	}
	if c.Username != "" {
		opt.Username = c.Username
	}
	if c.PasswordFile != "" {
		if opt.Password, err = config.ReadPasswordFile(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("cluster.password_file: %w", err)
		}
	}
	if r.TLS || c.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("cluster.tls_ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("cluster.tls_ca_file: no PEM certificate in it")
			}
		}
		opt.TLS = tc
	}
	return cluster.New(opt, t, hooks, log), nil
}

// clusterStatus fills the cluster part of GET /v1/status.
func clusterStatus(n *cluster.Node, now time.Time, out *api.StatusJSON) {
	s := n.Status(now)
	cs := &api.ClusterJSON{Node: s.Node, Redis: s.Redis, Up: s.Up, LastError: s.LastError,
		Resyncs: s.Resyncs, Published: s.Published, Received: s.Received, Dropped: s.Dropped, Rejected: s.Rejected}
	if !s.Since.IsZero() {
		cs.Since = s.Since.UTC()
	}
	if !s.LastResync.IsZero() {
		cs.LastResync = s.LastResync.UTC()
	}
	for _, ns := range s.Nodes {
		j := api.ClusterNodeJSON{Name: ns.Name, Version: ns.Version, Self: ns.Self}
		if !ns.Started.IsZero() {
			j.Started = ns.Started.UTC()
		}
		if !ns.LastBeat.IsZero() {
			j.LastBeat = ns.LastBeat.UTC()
			j.BeatAgeMillis = now.Sub(ns.LastBeat).Milliseconds()
		}
		if !ns.LastMsg.IsZero() {
			j.LagMillis = ns.Lag.Milliseconds()
			j.LastMessageAgeMillis = now.Sub(ns.LastMsg).Milliseconds()
		}
		cs.Nodes = append(cs.Nodes, j)
	}
	out.Cluster = cs
}

// clusterMetrics writes the mailgate_cluster_* series.
func clusterMetrics(n *cluster.Node) func(w io.Writer) {
	return func(w io.Writer) {
		s := n.Status(time.Now())
		up := 0.0
		if s.Up {
			up = 1
		}
		metrics.WriteGauge(w, `mailgate_cluster_up`, up)
		metrics.WriteGauge(w, `mailgate_cluster_nodes`, float64(len(s.Nodes)))
		metrics.WriteCounter(w, `mailgate_cluster_resyncs_total`, s.Resyncs)
		metrics.WriteCounter(w, `mailgate_cluster_events_published_total`, s.Published)
		metrics.WriteCounter(w, `mailgate_cluster_messages_received_total`, s.Received)
		metrics.WriteCounter(w, `mailgate_cluster_dropped_total`, s.Dropped)
		metrics.WriteCounter(w, `mailgate_cluster_rejected_total`, s.Rejected)
	}
}

// printClusterStatus prints the cluster part of 'mailgate status'.
func printClusterStatus(w io.Writer, c *api.ClusterJSON) error {
	if c == nil {
		return nil
	}
	state := "connected"
	if !c.Up {
		state = "DOWN: deciding on this node's own state (merges back when Redis returns)"
	}
	fmt.Fprintf(w, "cluster: node %s, Redis %s %s", c.Node, c.Redis, state)
	if !c.Since.IsZero() {
		fmt.Fprintf(w, " since %s", c.Since.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if !c.Up && c.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", c.LastError)
	}
	fmt.Fprintf(w, "  merges %d, login results published %d, messages received %d, dropped %d, rejected %d\n",
		c.Resyncs, c.Published, c.Received, c.Dropped, c.Rejected)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tVERSION\tSTARTED\tLAST HEARTBEAT\tLAG")
	for _, n := range c.Nodes {
		name := n.Name
		if n.Self {
			name += " (this)"
		}
		beat, lag := "none", "-"
		if !n.LastBeat.IsZero() {
			beat = (time.Duration(n.BeatAgeMillis) * time.Millisecond).Round(100*time.Millisecond).String() + " ago"
		}
		if n.LastMessageAgeMillis > 0 || n.LagMillis > 0 {
			lag = (time.Duration(n.LagMillis) * time.Millisecond).String()
		}
		started := "-"
		if !n.Started.IsZero() {
			started = n.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", name, n.Version, started, beat, lag)
	}
	return tw.Flush()
}

// clusterLimiter counts a sender's recipients here and tells the other
// nodes of each one accepted, so that the sending limits hold across the
// cluster.
type clusterLimiter struct {
	l postfix.Limiter
	n *cluster.Node
}

func (c clusterLimiter) Rcpt(login, instance string, now time.Time) sendlimit.Exceeded {
	ex := c.l.Rcpt(login, instance, now)
	if ex.OK() && login != "" {
		c.n.Rcpt(login, instance)
	}
	return ex
}
