package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/cluster"
	"mailgate/internal/config"
	"mailgate/internal/console"
	"mailgate/internal/dovecot"
	"mailgate/internal/geoip"
	"mailgate/internal/nft"
	"mailgate/internal/nginxauth"
	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/postfix"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
	"mailgate/internal/store"
)

func cmdServe(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "the config `FILE` (default "+config.DefaultPath+" if it exists)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: serve takes no arguments (got %q)", errUsage, pos[0])
	}
	cfg, used, err := config.LoadOrDefault(*cfgPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar) // a reload changes it
	level.Set(logLevel(cfg.Log.Level))
	log := slog.New(logHandler(stderr, &slog.HandlerOptions{Level: level}))
	if used == "" {
		log.Info("no config file; running on built-in defaults", "looked_for", config.DefaultPath)
	} else {
		log.Info("config loaded", "file", used)
	}
	return serve(ctx, cfg, *cfgPath, log, level)
}

// serve builds every component in dependency order and runs until ctx is
// done: config → store → rules → engine → decision log → doors → admin API.
// path is the --config given (re-read by a reload), level the log level
// (set by a reload).
func serve(ctx context.Context, cfg config.Config, path string, log *slog.Logger, level *slog.LevelVar) error {
	tel := newTelemetry(time.Now())
	log = tel.wrapLog(log)
	fixed, err := configRules(&cfg)
	if err != nil {
		return err
	}

	st, stName, err := openStore(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}

	idx := rules.NewIndex()
	book := api.NewRulebook(st, idx, fixed)
	n, err := book.Load(ctx, time.Now())
	if err != nil {
		return err
	}
	log.Info("rules loaded", "stored", n, "from_config", len(fixed), "db", stName)

	dw, err := openDecisionWriter(cfg.Log.Decisions)
	if err != nil {
		return err
	}
	defer dw.Close()
	dlog := policy.NewDecisionLog(dw)
	dlog.Observe(tel.m)

	bf := cfg.BruteForce
	geo := &geoHolder{log: log.With("component", "geoip")}
	defer geo.close()
	engine, tracker, err := newEngine(&cfg, idx, geo)
	if err != nil {
		return err
	}
	if err := loadAbuseState(ctx, st, tracker, bf, time.Now(), log.With("component", "bruteforce")); err != nil {
		return err
	}
	if cfg.GeoIP.Database == "" {
		if n := countryRules(ctx, book); n > 0 {
			log.Warn("country rules are stored but no GeoIP database is configured: they never match, and an allow rule by country refuses every login of its account; set [geoip] database", "rules", n)
		}
	}
	persist := newAbusePersister(st, tracker, bf, log.With("component", "bruteforce"))
	notes, err := newNotifier(&cfg, tracker, engine, time.Now(), log.With("component", "notify"))
	if err != nil {
		return err
	}
	// What other nodes publish is applied through these, set once the
	// doors' handlers below exist.
	var remoteEvent func(ev cluster.Event, now time.Time)
	var remoteBans func(added, removed []abuse.Ban, now time.Time)
	remotePermits := func([]cluster.Permit, []netip.Prefix, time.Time) {} // relay permits off
	remoteRcpts := func([]cluster.Rcpt, time.Time) {}                     // no sending limits
	var node *cluster.Node
	_, sharedStore := st.(*store.Postgres)
	if cfg.Cluster.Enabled {
		// The tracker gets the digest other nodes publish, here too: a
		// password is one password whichever node saw it.
		engine.WithPwDigest(cluster.Digest)
		node, err = newClusterNode(cfg.Cluster, tracker, cluster.Hooks{
			Event:       func(ev cluster.Event, now time.Time) { remoteEvent(ev, now) },
			BansChanged: func(added, removed []abuse.Ban, now time.Time) { remoteBans(added, removed, now) },
			Permits: func(added []cluster.Permit, removed []netip.Prefix, now time.Time) {
				remotePermits(added, removed, now)
			},
			Rcpts: func(rs []cluster.Rcpt, now time.Time) { remoteRcpts(rs, now) },
		}, tel.started, log.With("component", "cluster"))
		if err != nil {
			return err
		}
	}
	bl, err := newDNSBL(cfg.DNSBL, engine, log.With("component", "dnsbl"))
	if err != nil {
		return err
	}
	bl.failed = notes.dnsblFailed
	pws, err := newPwState(ctx, cfg.Password, st, time.Now(), log.With("component", "password"))
	if err != nil {
		return err
	}

	var grants *permits
	if cfg.Relay.Enabled {
		rc, err := cfg.Relay.RelayConfig()
		if err != nil {
			return err
		}
		grants = newPermits(relay.New(rc), st, dlog, log.With("component", "relay"))
		n, err := grants.load(ctx, time.Now())
		if err != nil {
			return fmt.Errorf("loading relay permits: %w", err)
		}
		log.Info("relay permits loaded", "permits", n, "ttl", rc.TTL)
		if !coversLoopback(rc.Never) {
			log.Warn("relay.never_networks leaves out loopback: behind nginx or a webmail every login comes from 127.0.0.1 or ::1, and a permit there lets every local process relay")
		}
	}
	var limiter *sendlimit.Limiter
	if sl := cfg.Limits.SendLimit(); sl.Default != (sendlimit.Limits{}) || len(sl.Accounts) > 0 {
		limiter = sendlimit.New(sl)
	}

	var fwall *firewall
	if cfg.Firewall.Enabled {
		trusted, err := cfg.TrustedPrefixes()
		if err != nil {
			return err
		}
		if fwall, err = newFirewall(cfg.Firewall, trusted, tracker, st, log.With("component", "firewall")); err != nil {
			return err
		}
		fwall.failed = notes.firewallFailed
		now := time.Now()
		if err := fwall.load(ctx, now); err != nil {
			return fmt.Errorf("loading trusted addresses: %w", err)
		}
		// A firewall that cannot be applied must not take the doors down
		// with it (Postfix fails closed: mail would stop): the error is
		// logged, and every reconcile tries again.
		if added, removed, err := fwall.Apply(now); err != nil {
			log.Error("firewall: applying table inet mailgate failed; the doors run without it, and every reconcile tries again", "err", err)
			notes.firewallFailed("applying table inet mailgate at start", err, now)
		} else {
			log.Info("firewall applied", "mode", cfg.Firewall.Mode, "added", added, "removed", removed)
		}
	} else {
		warnLeftoverTable(log)
	}

	var dnsbl *dnsblServer
	if cfg.DNSBLServer.Listen != "" {
		var fw autobanReader
		if fwall != nil {
			fw = fwall.fw
		}
		if dnsbl, err = newDNSBLServer(cfg.DNSBLServer, tracker, fw, tel.dnsblCounter(), log.With("component", "dnsbl-server")); err != nil {
			return fmt.Errorf("dnsbl_server: %w", err)
		}
		// Its sockets are bound now; a return before they are served must
		// not leave them bound (a second Shutdown at the end is harmless).
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			dnsbl.srv.Shutdown(sctx)
		}()
	}

	// report takes a login result from a door here (remote false) or
	// from another node's (remote true).
	report := func(a *policy.Attempt, success bool, now time.Time, remote bool) {
		if policy.BadLogin(a.Login) {
			return // the doors refuse it; it must never be counted or stored
		}
		if node != nil && !remote {
			node.Event(cluster.Event{Login: a.Login, Addr: a.Client, PwHash: cluster.Digest(a.PwHash), Success: success,
				Service: a.Service.String(), Door: a.Door})
		}
		if success && !remote {
			notes.success(a, now) // before Report records the country
		}
		bans := engine.Report(a, success, now)
		for _, b := range bans {
			dlog.Ban(now, &b, false)
			persist.ban(b)
		}
		if node == nil {
			notes.bans(bans, a, now)
		} else {
			node.Banned(bans)
			notes.clusterBans(bans, a, tracker.Held)
		}
		if fwall != nil {
			fwall.bans(bans, nil)
		}
		if success {
			// A login another node saw is stored by that node when the
			// store is shared (PostgreSQL); each SQLite keeps its own.
			keep := !remote || !sharedStore
			if keep {
				persist.knownGood(a.Login, a.Client, now)
			}
			if grants != nil {
				p, o := grants.record(a.Login, a.Service, a.Client, a.Door, now, keep)
				if !remote {
					notes.permit(grants, p, o, a.Login, a.Service, a.Client, now)
				}
			}
			if fwall != nil {
				fwall.login(a.Login, a.Service, a.Client, now)
			}
		}
	}
	onReport := func(a *policy.Attempt, success bool, now time.Time) { report(a, success, now, false) }
	// hookLogin is a login reported by the post-login hook, here or on
	// another node (remote).
	hookLogin := func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time, remote bool) (relay.Permit, relay.Outcome) {
		if fwall != nil {
			fwall.login(login, svc, addr, now)
		}
		p, o := grants.record(login, svc, addr, door, now, !remote || !sharedStore)
		if !remote {
			notes.permit(grants, p, o, login, svc, addr, now)
		}
		return p, o
	}
	// onLogin is a login reported by this node's post-login hook.
	onLogin := func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
		if node != nil {
			node.Event(cluster.Event{Login: login, Addr: addr, Success: true, Service: svc.String(), Door: door, Hook: true})
		}
		return hookLogin(login, svc, addr, door, now, false)
	}
	remoteEvent = func(ev cluster.Event, now time.Time) {
		svc := rules.ProtocolService(ev.Service)
		if ev.Hook {
			if grants != nil && rules.PrintableLogin(ev.Login) {
				hookLogin(ev.Login, svc, ev.Addr, ev.Door, now, true)
			}
			return
		}
		report(&policy.Attempt{Login: ev.Login, Service: svc, Client: ev.Addr, PwHash: ev.PwHash, PwDigested: true, Door: ev.Door}, ev.Success, now, true)
	}
	remoteBans = func(added, removed []abuse.Ban, now time.Time) {
		for _, b := range added {
			dlog.Ban(now, &b, false)
			if !sharedStore {
				persist.ban(b) // a shared store has it from the node that made it
			}
		}
		for _, b := range removed {
			dlog.Ban(now, &b, true)
			persist.ban(b) // no longer held: the store forgets it (a copy this node may have stored)
		}
		if fwall != nil {
			fwall.bans(added, removed)
		}
	}

	// bg runs the background work (expiry, persistence, GeoIP reloads).
	// It stops after the doors have shut down, whether ctx ended or a
	// listener failed, so that what the last requests did is persisted
	// and the process exits.
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	errc := make(chan error, 16) // every listener may fail once
	var servers []*http.Server
	start := func(name string, srv *http.Server, ln net.Listener) {
		servers = append(servers, srv)
		stopped := tel.listening(name, ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stopped()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		log.Info("listening", "door", name, "addr", ln.Addr().String())
	}

	if cfg.Dovecot.Enabled {
		// Never without a key: a report changes bans, known-good
		// addresses, permits and the firewall's trust.
		key, err := dovecotKey(&cfg, log)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Dovecot.Listen)
		if err != nil {
			return fmt.Errorf("dovecot.listen: %w", err)
		}
		h := dovecot.NewHandler(dovecot.Config{
			APIKey:       key,
			MaxBodyBytes: cfg.Dovecot.MaxBodyBytes,
			OnReport:     onReport,
			MaxTarpit:    max(bf.LoginTarpit, bf.StaleTarpit),
			DNSBL:        bl.gate.Fill,
		}, engine, dlog, log.With("door", "dovecot"))
		start("dovecot", &http.Server{
			Handler:           tel.timed("dovecot", h),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       time.Minute, // Dovecot closes idle connections after 10 s
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}, ln)
	}

	if cfg.Nginx.Enabled {
		ln, err := listenNginx(&cfg.Nginx)
		if err != nil {
			return err
		}
		if cfg.Nginx.Unix() {
			defer os.Remove(cfg.Nginx.Listen)
		}
		v, closeV := newVerifier(&cfg.Nginx, log)
		defer closeV()
		n := &cfg.Nginx
		maxTarpit := max(bf.LoginTarpit, bf.StaleTarpit)
		h := nginxauth.NewHandler(nginxauth.Config{
			SecretHeader:    n.SecretHeader,
			Secret:          n.Secret,
			Backends:        n.Backends(),
			Verify:          n.VerifySet(),
			FailWait:        n.FailWait,
			MaxWaitAttempts: n.MaxWaitAttempts,
			SMTPErrorCode:   n.SMTPErrorCode,
			FailMessage:     n.FailMessage,
			MaxTarpit:       maxTarpit,
			OnReport:        onReport,
			DNSBL:           bl.gate.Fill,
			Password:        pws.loginCheck(),
			Flags:           pws.loginFlags(),
			RefuseWeakSMTP:  cfg.Password.RefuseWeakSubmission,
		}, engine, v, dlog, log.With("door", "nginx"))
		start("nginx", &http.Server{
			Handler:           tel.timed("nginx", h),
			ReadHeaderTimeout: 5 * time.Second,
			// A stale client's tarpit plus a password check.
			WriteTimeout:   maxTarpit + n.VerifyTimeout + 10*time.Second,
			IdleTimeout:    10 * time.Second, // nginx uses one connection per request
			MaxHeaderBytes: nginxauth.MaxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}, ln)
	}

	var pfx *postfix.Server
	if cfg.Postfix.Enabled {
		pc := cfg.Postfix
		var pm postfix.Permits
		if grants != nil {
			pm = grants.t
		}
		var lim postfix.Limiter
		if limiter != nil {
			lim = notes.limiter(limiter)
			if node != nil {
				lim = clusterLimiter{l: lim, n: node}
				remoteRcpts = func(rs []cluster.Rcpt, now time.Time) {
					for _, r := range rs {
						limiter.Count(r.Login, r.Instance, now)
					}
				}
			}
		}
		h := postfix.NewHandler(postfix.Config{
			RelayContext: pc.RelayContext,
			LimitAction:  pc.LimitAction,
			IdleTimeout:  pc.IdleTimeout,
			MaxConns:     pc.MaxConnections,
			Latency:      tel.latency("postfix"),
			Weak:         pws.refuseWeak(cfg.Password.RefuseWeakSubmission),
		}, engine, pm, lim, dlog, log.With("door", "postfix"))
		pfx = postfix.NewServer(h, log.With("door", "postfix"))
		defer pfx.Close()
		serveLn := func(name, network, addr string, serve func(net.Listener) error) error {
			var ln net.Listener
			var err error
			if network == "unix" {
				// Postfix's smtpd runs as user postfix: the directory
				// (private/, mode 0700) keeps other users out.
				ln, err = listenUnixMode(addr, 0o666)
				if err == nil {
					warnSocketDir(log, "postfix."+name, addr)
				}
			} else {
				ln, err = net.Listen(network, addr)
			}
			if err != nil {
				return fmt.Errorf("postfix.%s: %w", name, err)
			}
			stopped := tel.listening("postfix-"+name, addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer stopped()
				if err := serve(ln); err != nil && !errors.Is(err, postfix.ErrServerClosed) {
					errc <- fmt.Errorf("postfix %s: %w", name, err)
				}
			}()
			log.Info("listening", "door", "postfix-"+name, "addr", addr)
			return nil
		}
		policySrv := func(ln net.Listener) error { return pfx.ServePolicy(ln, false) }
		listeners := []struct {
			name, network, addr string
			serve               func(net.Listener) error
		}{
			{"listen", "tcp", pc.Listen, policySrv},
			{"socket", "unix", pc.Socket, policySrv},
			{"relay_listen", "tcp", pc.RelayListen, func(ln net.Listener) error { return pfx.ServePolicy(ln, true) }},
			{"socketmap_listen", "tcp", pc.SocketmapListen, pfx.ServeSocketmap},
			{"tcp_table_listen", "tcp", pc.TCPTableListen, func(ln net.Listener) error { return pfx.ServeTCPTable(ln, pc.TCPTableMap) }},
		}
		for _, l := range listeners {
			if l.addr == "" {
				continue
			}
			if err := serveLn(l.name, l.network, l.addr, l.serve); err != nil {
				return err
			}
		}
		if grants == nil {
			log.Info("relay permits are off ([relay] enabled = false): relay checks are answered DUNNO")
		}
	}

	var logs *logDoor
	if cfg.Logs.Enabled {
		// The log door reports as the doors do: a decision line, then
		// the tracker, permits and firewall trust.
		logs = newLogDoor(&cfg, func(a *policy.Attempt, success bool, now time.Time) {
			dlog.Result(now, a, success)
			onReport(a, success, now)
		}, log.With("door", "log"))
	}

	banbook := api.NewBanbook(persist, tracker)
	admin := api.NewServer(book, banbook, engine, log.With("component", "admin"), version, cfg.Admin.Token).
		WithBackup(st.Backup).
		WithGeoIP(cfg.GeoIP.Database != "").
		WithDNSBL(bl.explain)
	if fwall != nil || node != nil {
		banbook.OnChange(func(added, removed []abuse.Ban) {
			if fwall != nil {
				fwall.bans(added, removed)
			}
			if node != nil {
				node.Banned(added)
				node.Lifted(removed, time.Now())
			}
		})
	}
	if fwall != nil {
		// From the kernel's ruleset to the wanted one: "+" lines are what
		// 'firewall apply' adds, "-" lines what it removes.
		admin.WithFirewall(fwall, cfg.Firewall.Mode, func(want, have string) string { return nft.Diff(have, want) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			fwall.run(bg)
		}()
	}
	if grants != nil {
		pb := api.NewPermitbook(grants, grants.t).WithLog(dlog)
		if node != nil {
			pb.OnChange(func(added, removed []relay.Permit) {
				var ws []cluster.Permit
				for _, p := range added {
					ws = append(ws, cluster.Permit{Prefix: p.Prefix.String(), Expires: p.Expires.Unix(), Comment: p.Comment, By: p.By})
				}
				var gone []netip.Prefix
				for _, p := range removed {
					gone = append(gone, p.Prefix)
				}
				node.PermitsChanged(ws, gone)
			})
			remotePermits = func(added []cluster.Permit, removed []netip.Prefix, now time.Time) {
				for _, w := range added {
					pfx, _ := netip.ParsePrefix(w.Prefix)
					p, err := grants.t.Add(relay.Permit{Prefix: pfx, Expires: time.Unix(w.Expires, 0), Comment: w.Comment, By: w.By}, now)
					if err != nil {
						log.Warn("cluster: a permit from another node is refused here", "permit", w.Prefix, "err", err)
						continue
					}
					dlog.Permit(now, &p, policy.PermitGranted)
					if !sharedStore {
						grants.queue(p, false) // each SQLite keeps its own copy
					}
				}
				for _, pfx := range removed {
					if p, ok := grants.t.Remove(pfx.Addr()); ok {
						dlog.Permit(now, &p, policy.PermitRemoved)
						if !sharedStore {
							grants.queue(p, true)
						}
					}
				}
			}
		}
		admin.WithRelay(pb, onLogin)
		if cfg.Relay.HookSocket != "" {
			hln, err := listenUnix(cfg.Relay.HookSocket)
			if err != nil {
				return fmt.Errorf("relay.hook_socket: %w", err)
			}
			if err := chgrp(cfg.Relay.HookSocket, cfg.Relay.HookSocketGroup); err != nil {
				hln.Close()
				return fmt.Errorf("relay.hook_socket_group: %w", err)
			}
			defer os.Remove(cfg.Relay.HookSocket)
			start("hook", &http.Server{
				Handler:           api.HookHandler(onLogin, log.With("component", "hook")),
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       5 * time.Second,
				WriteTimeout:      5 * time.Second,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}, hln)
		}
	}
	if limiter != nil {
		admin.WithLimits(limiter)
	}
	admin.WithPassword(pws.checker, pws.limit, pws.flags, pws.days)
	var permitCount func() int
	if grants != nil {
		permitCount = grants.t.Len
	}
	probe := &storeProbe{st: st}
	tel.gauges(tracker, permitCount, geo.current, probe)
	tel.m.Writer(bl.writeMetrics)
	tel.m.Writer(notes.writeMetrics)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bl.run(bg)
	}()
	base := tel.status(permitCount, geo.current)
	status := func(now time.Time, out *api.StatusJSON) {
		base(now, out)
		bl.status(out)
	}
	if logs != nil {
		logs.gauges(tel)
		all := status
		status = func(now time.Time, out *api.StatusJSON) {
			all(now, out)
			logs.status(now, out)
		}
	}
	if dnsbl != nil {
		// Its listener starts here, after everything it reads from.
		addr := dnsbl.srv.Addr()
		stopped := tel.listening("dnsbl-server", addr)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer stopped()
			if err := dnsbl.srv.Serve(); err != nil {
				errc <- fmt.Errorf("dnsbl server: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			dnsbl.pollAutobans(bg)
		}()
		log.Info("listening", "door", "dnsbl-server", "addr", addr, "zone", dnsbl.h.Zone(), "kernel_autobans", fwall != nil)
		all := status
		status = func(now time.Time, out *api.StatusJSON) {
			all(now, out)
			out.DNSBLServer = dnsbl.status()
		}
	}
	if pg, ok := st.(*store.Postgres); ok {
		status = withRuleSync(status, tel, pg)
	}
	if node != nil {
		all := status
		status = func(now time.Time, out *api.StatusJSON) {
			all(now, out)
			clusterStatus(node, now, out)
		}
		tel.m.Writer(clusterMetrics(node))
		wg.Go(func() { node.Run(bg) })
	}
	admin.WithHealth(tel.health(probe)).WithStatus(status)
	if cfg.Metrics.Listen != "" {
		mln, err := listenMetrics(cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		start("metrics", tel.metricsServer(tel.health(probe), log), mln)
	}
	admin.WithBruteForce(tracker, func(now time.Time, actor string) {
		s := tracker.SurgeState(now)
		dlog.Surge(now, s, actor)
		log.Info("under attack: ended by hand", "by", actor)
	})
	rl := &reloader{path: path, cfg: cfg, log: log, level: level, book: book, engine: engine, tracker: tracker,
		geo: geo, grants: grants, limiter: limiter, fwall: fwall, dnsbl: dnsbl, blocks: bl, dw: dw, admin: admin, pws: pws, notes: notes}
	admin.WithReload(func(ctx context.Context, actor string) api.ReloadJSON { return rl.reload(ctx, actor, time.Now()) })
	uln, err := listenUnix(cfg.Admin.Socket)
	if err != nil {
		return fmt.Errorf("admin.socket: %w", err)
	}
	start("admin", newAdminServer(admin.Handler(), log), uln)
	if cfg.Password.CheckListen != "" {
		pln, err := net.Listen("tcp", cfg.Password.CheckListen)
		if err != nil {
			return fmt.Errorf("password.check_listen: %w", err)
		}
		start("password-check", &http.Server{
			Handler:           admin.PasswordHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}, pln)
	}
	if cfg.Admin.Listen != "" {
		tln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			return fmt.Errorf("admin.listen: %w", err)
		}
		start("admin-tcp", newAdminServer(admin.Handler(), log), tln)
	}
	if cfg.Console.Listen != "" {
		token := ""
		if cfg.Console.TokenSignIn {
			token = cfg.Admin.Token
		}
		con, err := console.New(console.Config{
			Token: token, UsersFile: cfg.ConsoleUsersFile(), SessionTTL: cfg.Console.SessionTTL,
			SecureCookie: cfg.Console.SecureCookie, SignInFailures: cfg.Console.SignInFailures,
			SignInWindow: cfg.Console.SignInWindow, DecisionLog: decisionSource(dw, cfg.Console.JournalUnit),
		}, admin.Handler(), log.With("component", "console"), time.Now)
		if err != nil {
			return err
		}
		cln, err := net.Listen("tcp", cfg.Console.Listen)
		if err != nil {
			return fmt.Errorf("console.listen: %w", err)
		}
		start("console", &http.Server{
			Handler:           con.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      time.Minute,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}, cln)
	}

	// Expired rules leave memory and disk within a second; lookups already
	// ignore them from the instant they expire.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		storeDown := onceWhileDown{log: log, what: "expiring rules"}
		for {
			select {
			case <-bg.Done():
				return
			case now := <-t.C:
				gone, err := book.Expire(bg, now)
				if logged := storeDown.failed(err); err != nil && !logged && bg.Err() == nil {
					log.Error("expiring rules", "kind", "store", "err", err)
				}
				for _, r := range gone {
					log.Info("rule expired", "id", r.ID, "rule", store.Detail(&r))
				}
				for _, b := range tracker.Expire(now) {
					dlog.Ban(now, &b, true)
				}
				if s, changed := tracker.Surge(now); changed {
					dlog.Surge(now, s, "")
					if s.On {
						log.Warn("under attack: the server fails far more logins than usual; logins from new places are refused until it is over (mailgate attack end lifts it)",
							"failures_10m", s.Recent, "usual_10m", s.Usual, "threshold_10m", s.Threshold)
					} else {
						log.Info("under attack: over", "failures_10m", s.Recent, "usual_10m", s.Usual)
					}
				}
				if grants != nil {
					grants.expire(now)
				}
			}
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		persist.run(bg)
	}()
	wg.Go(func() { pws.run(bg) })
	// Stopped with the background work, after the doors: the events of
	// the last requests still get their one bounded attempt.
	wg.Go(func() { notes.run(bg, geo.current) })
	if pg, ok := st.(*store.Postgres); ok {
		// Rule changes other nodes commit reach this node's index as
		// they commit (docs/store-postgres.md).
		wg.Go(func() { pg.ListenRules(bg, book, time.Second, log.With("component", "rulesync")) })
	}
	if grants != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			grants.run(bg)
		}()
	}

	if logs != nil {
		// Started last: every listener is up, nothing returns early.
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs.run(bg, cfg.Logs.Poll)
		}()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("mailgate running", "version", version)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-hup:
			if err := dw.Reopen(); err != nil {
				log.Error("reopening decision log", "err", err)
			} else {
				log.Info("decision log reopened")
			}
			geo.reopen()
			rl.reload(ctx, "SIGHUP", time.Now())
		}
	}
	log.Info("shutting down")
	// The doors stop taking requests, and the requests in flight finish
	// (an nginx request may hold a tarpit and then a password check; its
	// result may make a ban), bounded by drainTimeout; only then does the
	// background work stop, with a last bounded write of the live state.
	drain := drainTimeout(&cfg)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var sw sync.WaitGroup
	for _, srv := range servers {
		sw.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("requests still in flight at shutdown were cut off", "waited", drain, "err", err)
			}
		})
	}
	if dnsbl != nil {
		sw.Go(func() {
			if err := dnsbl.srv.Shutdown(sctx); err != nil {
				log.Warn("dnsbl server: shutting down", "err", err)
			}
		})
	}
	if pfx != nil {
		pfx.Close()
		if cfg.Postfix.Socket != "" {
			os.Remove(cfg.Postfix.Socket)
		}
	}
	sw.Wait()
	stopBG()
	wg.Wait()
	os.Remove(cfg.Admin.Socket)
	return runErr
}

// newEngine builds the decision engine the config describes over the
// rules in idx: the brute-force tracker ([bruteforce]) and, when [geoip]
// database is set, the country lookup (through geo, which watches the
// file) and the global country list. serve and replay both build their
// engine here, so that a replay decides as the daemon does.
func newEngine(cfg *config.Config, idx *rules.Index, geo *geoHolder) (*policy.Engine, *abuse.Tracker, error) {
	bf := cfg.BruteForce
	tracker := abuse.New(abuseConfig(cfg))
	engine := policy.New(idx, policy.Messages(cfg.Messages)).
		WithAbuse(tracker, bf.Enabled, bf.LoginTarpit, bf.StaleTarpit)
	if cfg.GeoIP.Database != "" {
		loc, err := geoip.NewLocator(cfg.GeoIP.Database, geoip.Options{Format: cfg.GeoIP.Format, CountryField: cfg.GeoIP.CountryField}, geo.log)
		if err != nil {
			return nil, nil, fmt.Errorf("geoip.database: %w", err)
		}
		engine.WithCountries(geo.swap(loc), cfg.GeoIP.Countries())
	}
	return engine, tracker, nil
}

// drainTimeout bounds how long shutdown waits for the requests in flight:
// the longest a door holds one (a tarpit, then the nginx door's password
// check), and a margin.
func drainTimeout(cfg *config.Config) time.Duration {
	d := max(cfg.BruteForce.LoginTarpit, cfg.BruteForce.StaleTarpit)
	if cfg.Nginx.Enabled {
		d += cfg.Nginx.VerifyTimeout
	}
	return d + 5*time.Second
}

// coversLoopback reports whether never holds both loopback addresses.
func coversLoopback(never []netip.Prefix) bool {
	v4, v6 := false, false
	for _, p := range never {
		v4 = v4 || p.Contains(netip.MustParseAddr("127.0.0.1"))
		v6 = v6 || p.Contains(netip.IPv6Loopback())
	}
	return v4 && v6
}

// countryLookup adapts the GeoIP locator to the engine.
func countryLookup(l *geoip.Locator) policy.CountryLookup {
	return func(a netip.Addr) (string, policy.CountryKind) {
		r := l.Lookup(a)
		switch r.Kind {
		case geoip.Found:
			return r.Country, policy.CountryFound
		case geoip.Private:
			return "", policy.CountryPrivate
		}
		return "", policy.CountryUnknown
	}
}

// countryRules counts the loaded rules that match countries.
func countryRules(ctx context.Context, book *api.Rulebook) int {
	rs, err := book.List(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for i := range rs {
		if rs[i].Countries != "" {
			n++
		}
	}
	return n
}

// newVerifier builds the nginx door's password check from the config.
func newVerifier(n *config.Nginx, log *slog.Logger) (nginxauth.Verifier, func()) {
	if n.VerifyWith == "imap" {
		return passcheck.NewIMAP(n.IMAPVerify, passcheck.IMAPOptions{Timeout: n.VerifyTimeout, SendID: true}), func() {}
	}
	d := passcheck.NewDovecot(n.DovecotAuth, passcheck.DovecotOptions{Timeout: n.VerifyTimeout}, log.With("component", "dovecot-auth"))
	return d, func() { d.Close() }
}

// configRules turns the config file's trusted and deny networks into
// global rules that live only in memory.
func configRules(cfg *config.Config) ([]rules.Rule, error) {
	trusted, err := cfg.TrustedPrefixes()
	if err != nil {
		return nil, err
	}
	deny, err := cfg.DenyPrefixes()
	if err != nil {
		return nil, err
	}
	var out []rules.Rule
	for _, p := range trusted {
		out = append(out, rules.Rule{Scope: rules.ScopeGlobal, Action: rules.Allow, Match: p, Source: "config", Comment: "policy.trusted_networks"})
	}
	for _, p := range deny {
		out = append(out, rules.Rule{Scope: rules.ScopeGlobal, Action: rules.Deny, Match: p, Source: "config", Comment: "policy.deny_networks"})
	}
	for i := range out {
		if err := out[i].Validate(); err != nil {
			return nil, fmt.Errorf("policy: %s: %w", out[i].Match, err)
		}
	}
	return out, nil
}

// listenUnix listens on a unix socket only root and the socket's group may
// use, removing a stale socket left by a crash (but not a live one).
func listenUnix(path string) (net.Listener, error) {
	return listenUnixMode(path, 0o660)
}

// decisionSource tells the console where the decision lines are now: the
// file, or (stdout and stderr under systemd) the unit's journal.
func decisionSource(dw *decisionWriter, unit string) func() console.Source {
	return func() console.Source {
		if p := dw.Path(); p != "" {
			return console.Source{File: p}
		}
		if w := dw.Where(); unit != "" && (w == "stdout" || w == "stderr") {
			return console.Source{Journal: []string{"journalctl", "--unit=" + unit}}
		}
		return console.Source{}
	}
}

// newAdminServer serves the admin API h with bounds on slow clients.
func newAdminServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ConnContext:       api.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		// An import's batches are the largest bodies (up to 64 MiB); a
		// client slower than this holds a connection for nothing.
		ReadTimeout: 2 * time.Minute,
		IdleTimeout: time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// listenNginx listens where nginx.listen says: TCP, or a unix socket of
// mode 0660 given to socket_group.
func listenNginx(n *config.Nginx) (net.Listener, error) {
	if !n.Unix() {
		ln, err := net.Listen("tcp", n.Listen)
		if err != nil {
			return nil, fmt.Errorf("nginx.listen: %w", err)
		}
		return ln, nil
	}
	ln, err := listenUnix(n.Listen)
	if err != nil {
		return nil, fmt.Errorf("nginx.listen: %w", err)
	}
	if err := chgrp(n.Listen, n.SocketGroup); err != nil {
		ln.Close()
		return nil, fmt.Errorf("nginx.socket_group: %w", err)
	}
	return ln, nil
}

// umaskMu serializes the umask changes of listenUnixMode.
var umaskMu sync.Mutex

// listenUnixMode is listenUnix with the socket's file mode.
func listenUnixMode(path string, mode os.FileMode) (net.Listener, error) {
	// 0751: a group-accessible socket inside (the hook socket) must be
	// reachable; the sockets' own modes keep others out.
	if err := os.MkdirAll(filepath.Dir(path), 0o751); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another mailgate is already running there", path)
		}
		os.Remove(path)
	}
	// The socket is created with the umask's mode and changed after: the
	// umask keeps it closed to everyone until then (the umask is the
	// process's: a file another goroutine creates meanwhile gets no
	// group or other bits either, which is stricter, never looser).
	umaskMu.Lock()
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// chgrp gives path to group (a name or number); "" leaves it as it is.
func chgrp(path, group string) error {
	if group == "" {
		return nil
	}
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, err := user.LookupGroup(group)
		if err != nil {
			return err
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("group %s: gid %q: %w", group, g.Gid, err)
		}
	}
	return os.Chown(path, -1, gid)
}

func logLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
