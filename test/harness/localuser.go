package harness

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
)

// LocalUserPackages are the programs DialUnixAs runs: setpriv (util-linux,
// always there on Debian) and socat.
var LocalUserPackages = map[string]string{
	"/usr/bin/setpriv": "util-linux",
	"/usr/bin/socat":   "socat",
}

// DialUnixAs connects to the unix socket at path as a local user other
// than root would: uid and gid, with the supplementary groups named in
// groups (comma-separated names or numbers; "" for none), and sends
// nothing. It returns why the connection failed (e.g. "Permission
// denied"), or nil. This is what a customer's PHP script on a shared
// host can do with a socket.
func DialUnixAs(t testing.TB, uid, gid int, groups, path string) error {
	t.Helper()
	Require(t, LocalUserPackages)
	args := []string{"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid)}
	if groups == "" {
		args = append(args, "--clear-groups")
	} else {
		args = append(args, "--groups", groups)
	}
	args = append(args, "socat", "-u", "OPEN:/dev/null", "UNIX-CONNECT:"+path)
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
