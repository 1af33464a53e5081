package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// TestNginxDocConfig checks that the nginx config of docs/nginx.md
// (etc/nginx/mailgate-mail.conf, which the page carries verbatim) is
// accepted by the real nginx: `nginx -t` with a test certificate in place
// of the Let's Encrypt paths.
func TestNginxDocConfig(t *testing.T) {
	harness.Require(t, harness.NginxPackages)
	dir := harness.TempDir(t, "nginx-doc-")
	snippet, err := os.ReadFile(filepath.Join("..", "etc", "nginx", "mailgate-mail.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := writeTestCert(t, dir)
	conf := strings.NewReplacer(
		"/etc/letsencrypt/live/mail.example.com/fullchain.pem", cert,
		"/etc/letsencrypt/live/mail.example.com/privkey.pem", key,
	).Replace(string(snippet))
	if conf == string(snippet) {
		t.Fatal("the certificate paths in etc/nginx/mailgate-mail.conf changed; update this test")
	}
	main := "load_module " + harness.NginxMailModule + ";\n" +
		"pid " + filepath.Join(dir, "nginx.pid") + ";\n" +
		"error_log " + filepath.Join(dir, "error.log") + ";\n" +
		"events { worker_connections 64; }\n" + conf
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nginx", "-t", "-p", dir+"/", "-c", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t on etc/nginx/mailgate-mail.conf: %v\n%s", err, out)
	}
}

func writeTestCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.com"},
		DNSNames: []string{"mail.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}
