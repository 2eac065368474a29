package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/social/user-events-router/cli"
)

// TestNoSecretInStartingLineOrCheck runs serve (or apply) and check in
// process with a secret in every form DATABASE_URL, APPLY_DATABASE_URL and
// NATS_URL take one, against servers that are not there, and reads
// everything they print: the "starting" line, the error lines, check's
// report. The secret must appear nowhere.
func TestNoSecretInStartingLineOrCheck(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-P4ss"
	// Port 1 refuses at once: every command fails fast after its
	// "starting" line.
	dbForms := []string{
		"postgres://app:" + secret + "@127.0.0.1:1/router?connect_timeout=1",
		"postgresql://app:" + secret + "@127.0.0.1:1,127.0.0.1:2/router?connect_timeout=1",
		"postgres://app@127.0.0.1:1/router?password=" + secret + "&connect_timeout=1",
		"postgres://app@127.0.0.1:1/router?sslmode=disable&sslpassword=" + secret,
		"postgres://app:p%40" + secret + "@127.0.0.1:1/router",
		"postgres://app:" + secret + "@x/y@127.0.0.1:1/router",
		"mysql://app:" + secret + "@127.0.0.1:1/router?timeout=1s",
		"mysql://app@127.0.0.1:1/router?passwd=" + secret,
		"mysql://app:" + secret + "@tcp(127.0.0.1:1)/router",
		"mysql://app:" + secret + "@127.0.0.1:1/router?bad%zz",
	}
	natsForms := []string{
		"nats://router:" + secret + "@127.0.0.1:1",
		"nats://" + secret + "@127.0.0.1:1", // a token
		"tls://router:" + secret + "@127.0.0.1:1",
		"nats://127.0.0.1:1?token=" + secret,
		"nats://router:" + secret + "@127.0.0.1:1,nats://router:" + secret + "@127.0.0.1:2",
		"nats://127.0.0.1:2,nats://" + secret + "@127.0.0.1:1",
		"nats://" + secret + "@127.0.0.1:1, " + secret + "@127.0.0.1:2", // not a URL list to net/url
		"nats://router:pa%zz" + secret + "@127.0.0.1:1",                 // nor this
	}

	type invocation struct {
		name string
		cmd  string
		env  map[string]string
	}
	var runs []invocation
	base := func(t *testing.T) map[string]string {
		dir := t.TempDir()
		return map[string]string{
			"DATA_DIR": dir, "DATABASE_URL": "sqlite:" + filepath.Join(dir, "router.db"), "NATS_URL": "nats://127.0.0.1:1",
			"HTTP_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0", "APPLY_ADMIN_ADDR": "127.0.0.1:0",
		}
	}
	// Test names (and so temporary directories) must not hold the secret.
	for i, f := range dbForms {
		runs = append(runs, invocation{fmt.Sprint("DATABASE_URL#", i), "serve", map[string]string{"DATABASE_URL": f}})
		runs = append(runs, invocation{fmt.Sprint("APPLY_DATABASE_URL#", i), "apply", map[string]string{"APPLY_DATABASE_URL": f}})
	}
	for i, f := range natsForms {
		runs = append(runs, invocation{fmt.Sprint("NATS_URL#", i), "serve", map[string]string{"NATS_URL": f}})
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			env := base(t)
			for k, v := range r.env {
				env[k] = v
			}
			getenv := func(k string) string { return env[k] }
			for _, cmd := range []string{r.cmd, "check"} {
				var out syncBuffer
				err := cli.Run(context.Background(), []string{cmd}, getenv, &out, &out)
				if code := cli.ExitCode(err, &out); code == 0 {
					t.Errorf("%s succeeded against servers that are not there:\n%s", cmd, out.String())
				}
				text := out.String()
				if strings.Contains(text, secret) {
					t.Errorf("%s with %v printed the secret:\n%s", cmd, r.env, text)
				}
				if cmd != "check" && strings.Contains(text, `"msg":"starting`) && !strings.Contains(text, "xxxxx") {
					t.Errorf("%s: the starting line shows no mask:\n%s", cmd, text)
				}
			}
		})
	}
}
