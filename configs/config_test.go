package configs

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load with no variables: %v", err)
	}
	if c != Defaults() {
		t.Fatalf("Load with no variables = %+v, want Defaults()", c)
	}
	if got := c.DatabaseURLOrDefault(); got != "sqlite:data/router.db" {
		t.Errorf("default database = %q", got)
	}
	if c.NATSListen != "127.0.0.1:4222" || c.Durable != "social-backend-consumer" || c.HTTPAddr != "127.0.0.1:3000" || c.AdminAddr != "127.0.0.1:8081" {
		t.Errorf("defaults differ from DESIGN §3: %+v", c)
	}
}

func TestLoadValues(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{
		"NATS_URL":      "nats://a:4222,nats://b:4222",
		"NATS_DURABLE":  "other",
		"DATABASE_URL":  "postgres://u:p@db/x",
		"NATS_ACK_WAIT": "1m",
		"MAX_IN_FLIGHT": " 16 ",
		"LOG_FORMAT":    "text",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "nats://a:4222,nats://b:4222" || c.Durable != "other" || c.AckWait != time.Minute || c.MaxInFlight != 16 || c.LogFormat != "text" {
		t.Errorf("values not applied: %+v", c)
	}
}

func TestLoadErrorsNameEveryVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"NATS_ACK_WAIT": "soon"}, []string{`NATS_ACK_WAIT="soon": not a duration`}},
		{map[string]string{"MAX_IN_FLIGHT": "many", "RETRY_MAX": "x"}, []string{`MAX_IN_FLIGHT="many"`, `RETRY_MAX="x"`}},
		{map[string]string{"SUBSCRIBERS": "8"}, []string{`SUBSCRIBERS="8": no longer used`, "MAX_IN_FLIGHT"}},
		{map[string]string{"COMMIT_BATCH_MAX": "0", "COMMIT_BATCH_WAIT": "5s", "COMMIT_WORKERS": "0"}, []string{"COMMIT_BATCH_MAX=0", "COMMIT_BATCH_WAIT=5s", "COMMIT_WORKERS=0"}},
		{map[string]string{"MAX_IN_FLIGHT": "0", "LOG_LEVEL": "loud", "LOG_FORMAT": "xml"}, []string{"MAX_IN_FLIGHT=0", `LOG_LEVEL="loud"`, `LOG_FORMAT="xml"`}},
		{map[string]string{"DATABASE_URL": "oracle://x"}, []string{"DATABASE_URL: must start with"}},
		{map[string]string{"NATS_LISTEN": "4222"}, []string{`NATS_LISTEN="4222": must be host:port`}},
		{map[string]string{"HTTP_ADDR": "3000"}, []string{`HTTP_ADDR="3000"`}},
		{map[string]string{"NATS_MAX_DELIVER": "0"}, []string{"NATS_MAX_DELIVER=0"}},
		{map[string]string{"NATS_USER": "u"}, []string{"NATS_USER and NATS_PASSWORD"}},
		{map[string]string{"NATS_TOKEN": "t", "NATS_CREDS": "/x"}, []string{"at most one way"}},
		{map[string]string{"NATS_CERT": "/c"}, []string{"NATS_CERT and NATS_KEY"}},
		{map[string]string{"NATS_STREAM": "a.b", "NATS_DURABLE": ""}, []string{`NATS_STREAM="a.b"`}},
		{map[string]string{"NATS_ACK_WAIT": "10s"}, []string{"NATS_ACK_WAIT=10s: must exceed the in-process retry budget"}},
		{map[string]string{"RETRY_MAX_INTERVAL": "1ms"}, []string{"RETRY_MAX_INTERVAL=1ms"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(tt.env))
			if err == nil {
				t.Fatalf("Load(%v) succeeded, want error", tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{
		"NATS_URL":     "nats://router:natspw@broker:4222,nats://s3cr3ttoken@broker2:4222",
		"DATABASE_URL": "postgres://app:dbpw@db:5432/x",
		"ADMIN_TOKEN":  "admintok",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("cfg", "config", c)
	for _, secret := range []string{"natspw", "dbpw", "admintok", "s3cr3ttoken"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("log line leaks %q: %s", secret, b.String())
		}
	}
	if !strings.Contains(b.String(), "broker:4222") {
		t.Errorf("log line lost the host: %s", b.String())
	}

	// A malformed secret is not echoed in the error either.
	_, err = Load(env(map[string]string{"NATS_TOKEN": "tok", "NATS_USER": "u", "NATS_PASSWORD": "pw-secret"}))
	if err == nil || strings.Contains(err.Error(), "pw-secret") {
		t.Errorf("error = %v, want one without the password", err)
	}
}

func TestVariablesDocumented(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, v := range Variables() {
		if seen[v.Name] {
			t.Errorf("variable %s listed twice", v.Name)
		}
		seen[v.Name] = true
		if v.Help == "" {
			t.Errorf("variable %s has no help", v.Name)
		}
	}
}

func TestAdminTokenRequiredBeyondLoopback(t *testing.T) {
	t.Parallel()
	for addr, needs := range map[string]bool{
		"127.0.0.1:8081": false, "localhost:8081": false, "[::1]:8081": false,
		":8081": true, "0.0.0.0:8081": true, "10.1.2.3:8081": true, "admin.internal:8081": true,
	} {
		_, err := Load(env(map[string]string{"ADMIN_ADDR": addr}))
		if got := err != nil && strings.Contains(err.Error(), "ADMIN_TOKEN: required"); got != needs {
			t.Errorf("ADMIN_ADDR=%s without ADMIN_TOKEN: err = %v, want refusal %v", addr, err, needs)
		}
		if _, err := Load(env(map[string]string{"ADMIN_ADDR": addr, "ADMIN_TOKEN": "t0k"})); err != nil {
			t.Errorf("ADMIN_ADDR=%s with a token: %v", addr, err)
		}
	}
}
