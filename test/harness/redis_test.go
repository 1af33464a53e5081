package harness

import "testing"

func TestStartRedis(t *testing.T) {
	r := StartRedis(t, "127.0.0.93")
	if got := r.Do("SET", "k", "v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := r.Do("GET", "k"); got != "v" {
		t.Fatalf("GET: %q", got)
	}
	if _, err := r.command("GET", "k"); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if _, err := r.command("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Start() // same port, no persistence: empty
	if got := r.Do("EXISTS", "k"); got != ":0" {
		t.Fatalf("EXISTS after restart: %q", got)
	}
}

func TestStartRedisTLS(t *testing.T) {
	r := StartRedisTLS(t, "127.0.0.93")
	if got := r.Do("PING"); got != "+PONG" {
		t.Fatalf("PING over TLS: %q", got)
	}
	plain := &Redis{t: t, Addr: r.Addr, Password: r.Password}
	if _, err := plain.command("PING"); err == nil {
		t.Fatal("the TLS-only server answered in plain text")
	}
}
