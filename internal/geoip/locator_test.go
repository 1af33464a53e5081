package geoip

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
)

// logBuffer collects a logger's output for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeVersion writes the database at path with 127.0.1.0/24 mapped to
// cc, alternating formats: even versions mmdb, odd ones BIN.
func writeVersion(t testing.TB, path string, version int, cc string) {
	t.Helper()
	nets := map[string]string{"127.0.1.0/24": cc, "2001:db8::/32": cc}
	var err error
	if version%2 == 0 {
		err = geoiptest.WriteMMDB(path, nets, geoiptest.ShapeMaxMind)
	} else {
		err = geoiptest.WriteBIN(path, nets, true)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var (
	addrDE = netip.MustParseAddr("127.0.1.1")
	addrV6 = netip.MustParseAddr("2001:db8::7")
)

func TestLocatorReloadUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.db")
	countries := []string{"DE", "FR", "CN", "US"}
	writeVersion(t, path, 0, countries[0])
	l, err := NewLocator(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	var stop atomic.Bool
	var lookups atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for _, a := range []netip.Addr{addrDE, addrV6} {
					r := l.Lookup(a)
					if r.Kind != Found || !strings.Contains("DE FR CN US", r.Country) || len(r.Country) != 2 {
						t.Errorf("Lookup(%s) during reloads = %+v", a, r)
						return
					}
				}
				lookups.Add(1)
			}
		}()
	}
	for v := 1; v <= 12; v++ {
		cc := countries[v%len(countries)]
		writeVersion(t, path, v, cc)
		if err := l.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := l.Lookup(addrDE); got != (Result{cc, Found}) {
			t.Fatalf("version %d: Lookup = %+v, want %s", v, got, cc)
		}
		wantFormat := []string{FormatMMDB, FormatIP2Location}[v%2]
		if f := l.Info().Format; f != wantFormat {
			t.Fatalf("version %d: format %s, want %s", v, f, wantFormat)
		}
		if v%3 == 0 {
			runtime.GC() // let retired databases be unmapped while lookups run
		}
	}
	stop.Store(true)
	wg.Wait()
	if lookups.Load() == 0 {
		t.Fatal("no lookups ran")
	}
}

func TestLocatorBrokenFileKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "country.mmdb")
	writeVersion(t, path, 0, "DE")
	l, err := NewLocator(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	good, _ := os.ReadFile(path)
	before := l.Info()

	replace := func(data []byte) {
		tmp := filepath.Join(dir, "new")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		apply func()
		want  string
	}{
		{"truncated", func() { replace(good[:len(good)/3]) }, "not a MaxMind DB"},
		{"empty", func() { replace(nil) }, "empty file"},
		{"wrong format", func() { replace([]byte(strings.Repeat("1.2.3.4,DE\n", 50))) }, "not a MaxMind DB"},
		{"missing", func() { os.Remove(path) }, "no such file"},
		{"directory", func() { os.Remove(path); os.Mkdir(path, 0o755) }, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.apply()
			defer os.RemoveAll(path)
			err := l.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "keeping the database") {
				t.Fatalf("Reload = %v, want an error naming %s and %q", err, path, tc.want)
			}
			if got := l.Lookup(addrDE); got != (Result{"DE", Found}) {
				t.Errorf("Lookup after a failed reload = %+v", got)
			}
			if l.Info() != before {
				t.Errorf("Info changed: %+v", l.Info())
			}
		})
	}
	// A good file again is taken.
	writeVersion(t, path, 1, "CN")
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := l.Lookup(addrDE); got != (Result{"CN", Found}) {
		t.Errorf("Lookup = %+v", got)
	}
}

func TestLocatorUnchangedNotReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.bin")
	writeVersion(t, path, 1, "DE")
	l, err := NewLocator(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first := l.cur.Load()
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if l.cur.Load() != first {
		t.Error("an unchanged file was read again")
	}
	// Same content, new file (new inode): read again.
	writeVersion(t, path, 1, "DE")
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if l.cur.Load() == first {
		t.Error("a replaced file was not read")
	}
}

func TestLocatorRetiredDatabasesUnmapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.db")
	writeVersion(t, path, 0, "DE")
	var unmapped atomic.Int32
	l, err := newLocator(path, Options{}, nil, func() { unmapped.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 3; v++ {
		writeVersion(t, path, v, "FR")
		if err := l.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for unmapped.Load() < 3 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := unmapped.Load(); n != 3 {
		t.Fatalf("%d retired databases unmapped, want 3", n)
	}
	if got := l.Lookup(addrDE); got != (Result{"FR", Found}) {
		t.Errorf("current database after GC: %+v", got)
	}
	l.Close()
	for unmapped.Load() < 4 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := unmapped.Load(); n != 4 {
		t.Fatalf("the closed Locator's database not unmapped (%d)", n)
	}
}

func TestLocatorClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.db")
	writeVersion(t, path, 0, "DE")
	l, err := NewLocator(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]Result{"127.0.1.1": {"", Private}, "8.8.8.8": {"", Unknown}, "::ffff:10.0.0.1": {"", Private}} {
		if got := l.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Lookup(%s) after Close = %+v, want %+v", addr, got, want)
		}
	}
	if got := l.Lookup(netip.Addr{}); got != (Result{Kind: Unknown}) {
		t.Errorf("Lookup(invalid) = %+v", got)
	}
	if err := l.Reload(); err == nil {
		t.Error("Reload after Close succeeded")
	}
	if l.Info() != (Info{}) {
		t.Errorf("Info after Close = %+v", l.Info())
	}
}

func TestNewLocatorError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.mmdb")
	if _, err := NewLocator(path, Options{}, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("NewLocator = %v, want an error naming the path", err)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLocatorWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "GeoLite2-Country.mmdb")
	writeVersion(t, path, 0, "DE")
	var logs logBuffer
	l, err := NewLocator(path, Options{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.debounce = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		l.Watch(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(100 * time.Millisecond) // the watch is set up

	// geoipupdate's way: a new file renamed over the old one.
	writeVersion(t, path, 2, "FR")
	waitFor(t, "the renamed file", func() bool { return l.Lookup(addrDE).Country == "FR" })
	waitFor(t, "the reload log line", func() bool { return strings.Contains(logs.String(), "geoip database reloaded") })

	// A file written in place.
	bin, err := geoiptest.BuildBIN(map[string]string{"127.0.1.0/24": "CN"}, geoiptest.BINOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rewritten file", func() bool { return l.Lookup(addrDE).Country == "CN" })

	// A broken file is logged and the old database kept.
	if err := os.WriteFile(filepath.Join(dir, "tmp"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "tmp"), path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload log line", func() bool { return strings.Contains(logs.String(), "geoip database reload failed") })
	if got := l.Lookup(addrDE); got != (Result{"CN", Found}) {
		t.Errorf("Lookup after a broken file = %+v", got)
	}
	// Other files in the directory are no reason to reload.
	before := strings.Count(logs.String(), "level=")
	if err := os.WriteFile(filepath.Join(dir, "other.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if after := strings.Count(logs.String(), "level="); after != before {
		t.Errorf("a change to another file was logged: %s", logs.String())
	}
}

func TestLocatorWatchSymlink(t *testing.T) {
	// /etc/mailgate/country.mmdb -> /var/lib/GeoIP/GeoLite2-Country.mmdb:
	// updates replace the target.
	linkDir, dataDir := t.TempDir(), t.TempDir()
	target := filepath.Join(dataDir, "GeoLite2-Country.mmdb")
	link := filepath.Join(linkDir, "country.mmdb")
	writeVersion(t, target, 0, "DE")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	l, err := NewLocator(link, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.debounce = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		l.Watch(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(100 * time.Millisecond)
	writeVersion(t, target, 2, "US")
	waitFor(t, "the replaced target", func() bool { return l.Lookup(addrDE).Country == "US" })
}

func TestTruncatedInPlace(t *testing.T) {
	nets, addrs := benchNets(20_000)
	for _, kind := range []string{"mmdb", "bin"} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "country.db")
			var err error
			if kind == "mmdb" {
				err = geoiptest.WriteMMDB(path, nets, geoiptest.ShapeMaxMind)
			} else {
				err = geoiptest.WriteBIN(path, nets, true)
			}
			if err != nil {
				t.Fatal(err)
			}
			l, err := NewLocator(path, Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for _, a := range addrs {
				l.Lookup(a)
			}
			// cp or unzip -o over the file: truncated, then written.
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
			for _, a := range addrs {
				if r := l.Lookup(a); r.Kind == Found && len(r.Country) != 2 {
					t.Fatalf("Lookup(%s) = %+v", a, r)
				}
			}
			if l.Info().Faults == 0 {
				t.Error("no lookup faulted on the truncated file")
			}
			if err := l.Reload(); err == nil {
				t.Error("Reload of a truncated file succeeded")
			}
			writeVersion(t, path, 0, "SE")
			if err := l.Reload(); err != nil {
				t.Fatal(err)
			}
			if got := l.Lookup(addrDE); got != (Result{"SE", Found}) || l.Info().Faults != 0 {
				t.Errorf("after the rewrite: %+v, %d faults", got, l.Info().Faults)
			}
		})
	}
}
