package test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/test/harness"
)

// phpPackages is the PHP interpreter that runs Roundcube's drivers.
var phpPackages = map[string]string{"/usr/bin/php": "php-cli"}

// TestRoundcubeDriver runs the shipped Roundcube password strength driver
// (contrib/roundcube/mailgate.php) with the real PHP against a running
// mailgate's password.check_listen: a good password scores 5, a weak one
// 1 with mailgate's reasons as the message, and with mailgate not
// listening the driver fails closed (2). The password is in no log.
func TestRoundcubeDriver(t *testing.T) {
	harness.Require(t, phpPackages)
	dir := harness.TempDir(t, "rc-")
	listen := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "rc-e2e-policy-key-2626", fmt.Sprintf("\n[password]\ncheck_listen = %q\n", listen)))
	waitListening(t, listen)
	driver, err := filepath.Abs(filepath.Join("..", "contrib", "roundcube", "mailgate.php"))
	if err != nil {
		t.Fatal(err)
	}
	const strong, weak = "vK8#qm2Lp0zR-Tq", "alice2024"
	for _, c := range []struct {
		url, pw string
		score   int
		reason  string
	}{
		{"http://" + listen + "/v1/password/check", strong, 5, ""},
		{"http://" + listen + "/v1/password/check", weak, 1, "characters; at least 12 are required"},
		{"http://" + listen + "/v1/password/check", weak, 1, "contains the account's name"},
		{"http://127.0.0.1:1/v1/password/check", strong, 2, "could not be checked"},
	} {
		score, reason := runDriver(t, driver, c.url, "alice@example.test", c.pw)
		if score != c.score || !strings.Contains(reason, c.reason) || strings.Contains(reason, c.pw) {
			t.Errorf("%s with %q: score %d %q; want %d with %q", c.url, c.pw, score, reason, c.score, c.reason)
		}
	}
	for _, log := range []string{mg.DecisionLog(), mg.Stderr()} {
		if strings.Contains(log, strong) || strings.Contains(log, weak) {
			t.Errorf("a password in mailgate's logs:\n%s", log)
		}
	}
}

// runDriver calls check_strength as Roundcube's password plugin does, with
// the session's username set; the password goes in the environment, not
// on the command line.
func runDriver(t *testing.T, driver, url, login, pw string) (int, string) {
	t.Helper()
	script := `
$_SESSION['username'] = getenv('RC_LOGIN');
require getenv('RC_DRIVER');
class rcmail {
    public $config;
    static function get_instance() { $r = new rcmail(); $r->config = new rc_config(); return $r; }
}
class rc_config {
    function get($k, $d = null) { return $k === 'password_mailgate_url' ? getenv('RC_URL') : ($k === 'password_mailgate_timeout' ? 3 : $d); }
}
$d = new rcube_mailgate_password();
echo json_encode($d->check_strength(getenv('RC_PASSWORD')));
`
	cmd := exec.Command("php", "-r", script)
	cmd.Env = append(os.Environ(), "RC_LOGIN="+login, "RC_DRIVER="+driver, "RC_URL="+url, "RC_PASSWORD="+pw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	var res []any
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 2 {
		t.Fatalf("driver output %q: %v", out, err)
	}
	reason, _ := res[1].(string)
	return int(res[0].(float64)), reason
}
