package configs

import (
	"fmt"
	"log/slog"
	"strconv"
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
	tests := []refusal{
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
	refusals(t, tests)
}

// refusal is an environment Load must refuse, and what the error must say.
type refusal struct {
	env  map[string]string
	want []string
}

// refusals runs each as a parallel subtest.
func refusals(t *testing.T, tests []refusal) {
	t.Helper()
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

// TestIngressAndAdminListenApart: the two listeners on one port fail at
// config time, naming both, instead of at the second bind.
func TestIngressAndAdminListenApart(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		http, admin string
		refused     bool
	}{
		{"127.0.0.1:41329", "127.0.0.1:41329", true},
		{":8081", "127.0.0.1:8081", true},
		{"127.0.0.1:8081", "0.0.0.0:8081", true},
		{"[::]:8081", "[::1]:8081", true},
		{"127.0.0.1:3000", "127.0.0.1:8081", false},
		{"127.0.0.1:8081", "127.0.0.2:8081", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"127.0.0.1:", "127.0.0.1:", false},
		{":http", ":80", true},
		{"127.0.0.1:8081", "127.0.0.1:08081", true},
		{"[::0]:8081", "127.0.0.1:8081", true},
		{"[::ffff:127.0.0.1]:8081", "127.0.0.1:8081", true},
		{"[0:0:0:0:0:0:0:1]:8081", "[::1]:8081", true},
		{"Admin.internal:8081", "admin.internal:8081", true},
		{"[::1]:8081", "127.0.0.1:8081", false},
		{"localhost:8081", "127.0.0.1:8081", false},
	} {
		vars := map[string]string{"HTTP_ADDR": tt.http, "ADMIN_ADDR": tt.admin, "ADMIN_TOKEN": "t0k"}
		_, err := Load(env(vars))
		got := err != nil && strings.Contains(err.Error(), "both listen on port")
		if got != tt.refused {
			t.Errorf("HTTP_ADDR=%s ADMIN_ADDR=%s: err = %v, want refusal %v", tt.http, tt.admin, err, tt.refused)
		}
		if got && (!strings.Contains(err.Error(), strconv.Quote(tt.http)) || !strings.Contains(err.Error(), strconv.Quote(tt.admin))) {
			t.Errorf("the error does not name both values: %v", err)
		}
	}
}

// TestEmbeddedNATSListensApart: the embedded NATS server's port is a
// listener's too; a router that shares it with the ingress or the admin
// API fails at config time, and only when it runs the embedded server.
func TestEmbeddedNATSListensApart(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		vars    map[string]string
		refused string
	}{
		{map[string]string{"NATS_LISTEN": "127.0.0.1:3000"}, `NATS_LISTEN="127.0.0.1:3000" and HTTP_ADDR="127.0.0.1:3000": both listen on port 3000`},
		{map[string]string{"NATS_LISTEN": "0.0.0.0:8081", "ADMIN_TOKEN": "t0k"}, `NATS_LISTEN="0.0.0.0:8081" and ADMIN_ADDR="127.0.0.1:8081": both listen on port 8081`},
		{map[string]string{"NATS_LISTEN": "127.0.0.1:4222"}, ""},
		// With NATS_URL set there is no embedded server to listen.
		{map[string]string{"NATS_LISTEN": "127.0.0.1:3000", "NATS_URL": "nats://127.0.0.1:4222"}, ""},
	} {
		_, err := Load(env(tt.vars))
		switch {
		case tt.refused == "" && err != nil:
			t.Errorf("%v: %v", tt.vars, err)
		case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
			t.Errorf("%v: err = %v, want %s", tt.vars, err, tt.refused)
		}
	}
}

// TestExposed: only loopback hosts count as unexposed; every interface,
// another address, a name other than localhost, and an address that is not
// host:port are all taken as reachable from elsewhere.
func TestExposed(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8081":   false,
		"127.0.0.2:8081":   false,
		"localhost:8081":   false,
		"LocalHost:8081":   false,
		"[::1]:8081":       false,
		":8081":            true,
		"0.0.0.0:8081":     true,
		"[::]:8081":        true,
		"10.0.0.5:8081":    true,
		"admin.local:8081": true,
		"8081":             true, // not host:port: assume the worst
		"":                 true,
	} {
		if got := Exposed(addr); got != want {
			t.Errorf("Exposed(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestEveryNumberBounded: an absurd value of any numeric variable is
// refused with a line naming the variable and its range — including the
// two that used to spin Validate at 100% CPU or overflow the retry budget
// past the ack-wait check. Run with a timeout (go test -timeout): a spin
// shows as a timeout, not a slow pass.
func TestEveryNumberBounded(t *testing.T) {
	t.Parallel()
	const huge = "9223372036854775807"
	tests := []refusal{
		{map[string]string{"RETRY_MAX": huge}, []string{"RETRY_MAX=" + huge + ": must be between 0 and 100"}},
		{map[string]string{"HANDLER_TIMEOUT": "1000000h", "RETRY_MAX": "3"}, []string{"HANDLER_TIMEOUT=1000000h0m0s: must be between 1ms and 1h"}},
		// In range, but together over the ack wait (the budget no longer
		// overflows into a negative that passes).
		{map[string]string{"HANDLER_TIMEOUT": "1h", "RETRY_MAX": "30", "NATS_ACK_WAIT": "24h"}, []string{"NATS_ACK_WAIT=24h0m0s: must exceed the in-process retry budget 31h"}},
		{map[string]string{"RETRY_MAX": "-1"}, []string{"RETRY_MAX=-1: must be between 0 and 100"}},
		{map[string]string{"NATS_ACK_WAIT": "1000000h"}, []string{"NATS_ACK_WAIT=1000000h0m0s: must be between 1s and 24h"}},
		{map[string]string{"NATS_MAX_DELIVER": huge}, []string{"NATS_MAX_DELIVER=" + huge + ": must be -1 (unlimited) or between 1 and 10000"}},
		{map[string]string{"NATS_MAX_DELIVER": "-2"}, []string{"NATS_MAX_DELIVER=-2"}},
		{map[string]string{"NATS_MAX_ACK_PENDING": huge}, []string{"NATS_MAX_ACK_PENDING=" + huge + ": must be between 1 and 1000000"}},
		{map[string]string{"MAX_IN_FLIGHT": huge}, []string{"MAX_IN_FLIGHT=" + huge + ": must be between 1 and 65536"}},
		{map[string]string{"MAX_IN_FLIGHT_BYTES": huge}, []string{"MAX_IN_FLIGHT_BYTES=" + huge + ": must be between 65536 and 17179869184 bytes"}},
		{map[string]string{"MAX_IN_FLIGHT_BYTES": "1000"}, []string{"MAX_IN_FLIGHT_BYTES=1000: must be between 65536"}},
		{map[string]string{"MAX_IN_FLIGHT_BYTES": "64MiB"}, []string{`MAX_IN_FLIGHT_BYTES="64MiB": not a number of bytes`}},
		{map[string]string{"MAX_IN_FLIGHT_BYTES": "99999999999999999999"}, []string{`MAX_IN_FLIGHT_BYTES="99999999999999999999": not a number of bytes`}},
		{map[string]string{"COMMIT_BATCH_MAX": huge, "COMMIT_WORKERS": huge}, []string{"COMMIT_BATCH_MAX=" + huge, "COMMIT_WORKERS=" + huge}},
		{map[string]string{"COMMIT_BATCH_WAIT": "-1ms"}, []string{"COMMIT_BATCH_WAIT=-1ms: must be between 0s and 1s"}},
		{map[string]string{"INGRESS_MAX_BODY": huge}, []string{"INGRESS_MAX_BODY=" + huge + ": must be between 1024 and 1048576 bytes"}},
		{map[string]string{"RETRY_INITIAL_INTERVAL": "1000000h"}, []string{"RETRY_INITIAL_INTERVAL=1000000h0m0s: must be between 1ms and 1m0s"}},
		{map[string]string{"RETRY_MAX_INTERVAL": "1000000h"}, []string{"RETRY_MAX_INTERVAL=1000000h0m0s: must be between 100ms and 10m0s"}},
		{map[string]string{"NAK_DELAY": "1000000h"}, []string{"NAK_DELAY=1000000h0m0s: must be between 0s and 1h"}},
		{map[string]string{"NAK_DELAY_MAX": "1000000h"}, []string{"NAK_DELAY_MAX=1000000h0m0s: must be between 1s and 24h"}},
		{map[string]string{"CLOSE_TIMEOUT": "1000000h"}, []string{"CLOSE_TIMEOUT=1000000h0m0s: must be between 1ms and 1h"}},
		{map[string]string{"CLOSE_TIMEOUT": "0s"}, []string{"CLOSE_TIMEOUT=0s"}},
		{map[string]string{"COMMANDS_RETENTION": "1000000h"}, []string{"COMMANDS_RETENTION=1000000h0m0s: must be 0 (keep forever) or between 1h and 87600h"}},
		{map[string]string{"NATS_ACK_WAIT": "99999999999h"}, []string{`NATS_ACK_WAIT="99999999999h": not a duration`}},
	}
	refusals(t, tests)
}

// TestRangesAdmitTheirEnds: each bound is inclusive, and the extremes
// together still validate (their budget stays below the ack wait).
func TestRangesAdmitTheirEnds(t *testing.T) {
	t.Parallel()
	for _, m := range []map[string]string{
		{"RETRY_MAX": "100", "HANDLER_TIMEOUT": "1ms", "RETRY_INITIAL_INTERVAL": "1ms", "RETRY_MAX_INTERVAL": "1ms"},
		{"RETRY_MAX": "0", "HANDLER_TIMEOUT": "1h", "NATS_ACK_WAIT": "24h"},
		{"NATS_MAX_DELIVER": "10000", "NATS_MAX_ACK_PENDING": "1000000", "MAX_IN_FLIGHT": "65536", "MAX_IN_FLIGHT_BYTES": "17179869184"},
		{"MAX_IN_FLIGHT_BYTES": "65536", "NAK_DELAY": "0s", "NAK_DELAY_MAX": "24h", "CLOSE_TIMEOUT": "1h", "COMMANDS_RETENTION": "87600h"},
	} {
		if _, err := Load(env(m)); err != nil {
			t.Errorf("Load(%v): %v", m, err)
		}
	}
}

// TestAttemptBudgetSaturates: the budget is exact for ordinary values and
// saturates, quickly, instead of overflowing or looping RETRY_MAX times.
func TestAttemptBudgetSaturates(t *testing.T) {
	t.Parallel()
	d := Defaults()
	// 4 attempts of 5s, then waits of 100ms, 200ms, 400ms, each up to 1.5×.
	if got, want := d.AttemptBudget(), 20*time.Second+1050*time.Millisecond; got != want {
		t.Errorf("default budget %v, want %v", got, want)
	}
	const maxDuration = time.Duration(1<<63 - 1)
	for name, c := range map[string]Config{
		"RETRY_MAX=MaxInt":                       {HandlerTimeout: time.Second, RetryMax: 1<<63 - 1, RetryInitialInterval: time.Millisecond, RetryMaxInterval: time.Second},
		"HANDLER_TIMEOUT=1000000h RETRY_MAX=3":   {HandlerTimeout: 1000000 * time.Hour, RetryMax: 3, RetryInitialInterval: 100 * time.Millisecond, RetryMaxInterval: 2 * time.Second},
		"RETRY_MAX_INTERVAL=max":                 {HandlerTimeout: time.Second, RetryMax: 1000, RetryInitialInterval: time.Millisecond, RetryMaxInterval: maxDuration},
		"RETRY_INITIAL_INTERVAL=0 RETRY_MAX=max": {HandlerTimeout: time.Hour, RetryMax: 1<<63 - 1, RetryMaxInterval: time.Second},
	} {
		if got := c.AttemptBudget(); got != maxDuration {
			t.Errorf("%s: budget %v, want the saturated maximum", name, got)
		}
	}
	// A wait of 0 adds nothing, however many retries.
	c := Config{HandlerTimeout: time.Second, RetryMax: 1 << 30}
	if got := c.AttemptBudget(); got != time.Duration(1<<30+1)*time.Second {
		t.Errorf("zero waits: budget %v", got)
	}
}

func TestUnknownVariables(t *testing.T) {
	t.Parallel()
	got := UnknownVariables([]string{
		"NATS_MAXDELIVER", "NATS_URL", "LOGLEVEL", "RETRY_MAXIMUM", "NATS_NKEY",
		"PATH", "HOME", "GOGC", "HTTP_PROXY", "NATS_SERVICE_HOST", "NATS_SERVICE_PORT_CLIENT", "NATS_PORT", "NATS_PORT_4222_TCP_ADDR",
		"SUBSCRIBERS", "APPLY", "DATABASE",
	})
	want := []string{
		"NATS_MAXDELIVER is not a router variable and is ignored; did you mean NATS_MAX_DELIVER?",
		"LOGLEVEL is not a router variable and is ignored; did you mean LOG_LEVEL?",
		"RETRY_MAXIMUM is not a router variable and is ignored",
		"NATS_NKEY is not a router variable and is ignored; did you mean NATS_NKEY_SEED?",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("UnknownVariables =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMemoryLimit: the default soft limit leaves a 256 Mi pod room for
// what the Go runtime does not count (SQLite's own allocations, the
// binary), and grows with the budget and the messages in flight.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	d := Defaults()
	if got := d.MemoryLimit(); got > 192<<20 {
		t.Errorf("default MemoryLimit = %d MiB, want at most 192 MiB under a 256 Mi pod", got>>20)
	}
	more := d
	more.MaxInFlightBytes *= 2
	more.MaxInFlight *= 2
	if more.MemoryLimit() <= d.MemoryLimit() {
		t.Errorf("MemoryLimit does not grow with MAX_IN_FLIGHT_BYTES and MAX_IN_FLIGHT")
	}
}

// TestEveryBadVariableNamedAtOnce: a value that cannot be read and one
// that breaks a rule are refused together, so that one start names them
// all; a rule that involves an unreadable variable is not judged on the
// default the router would not use.
func TestEveryBadVariableNamedAtOnce(t *testing.T) {
	t.Parallel()
	_, err := Load(env(map[string]string{
		"NATS_ACK_WAIT":          "x",
		"LOG_LEVEL":              "loud",
		"RETRY_INITIAL_INTERVAL": "soon",
		"RETRY_MAX_INTERVAL":     "1ms",
		"RETRY_MAX":              "1000",
	}))
	if err == nil {
		t.Fatal("loaded")
	}
	msg := err.Error()
	for _, want := range []string{`NATS_ACK_WAIT="x": not a duration`, `LOG_LEVEL="loud": must be`, `RETRY_INITIAL_INTERVAL="soon": not a duration`, `RETRY_MAX=1000: must be between`} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q: %s", want, msg)
		}
	}
	// RETRY_MAX_INTERVAL against RETRY_INITIAL_INTERVAL's default would
	// be judged on a value nobody set.
	if strings.Contains(msg, "RETRY_MAX_INTERVAL") {
		t.Errorf("a rule judged on an unreadable variable's default: %s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n != 4 {
		t.Errorf("%d errors, want 4: %s", n, msg)
	}

	for _, tt := range []struct {
		vars map[string]string
		want []string
	}{
		// The retry budget, with RETRY_MAX_INTERVAL's default, would
		// exceed the ack wait; with the 200ms meant, it does not.
		{map[string]string{"NATS_ACK_WAIT": "21s", "RETRY_MAX_INTERVAL": "200x"}, []string{`RETRY_MAX_INTERVAL="200x": not a duration`}},
		// A value that reads like a variable's name hides nothing.
		{map[string]string{"RETRY_MAX": "abc", "LOG_LEVEL": "RETRY_MAX"}, []string{`RETRY_MAX="abc"`, `LOG_LEVEL="RETRY_MAX": must be`}},
		// A variable read is still held to its own range.
		{map[string]string{"RETRY_INITIAL_INTERVAL": "x", "RETRY_MAX_INTERVAL": "11m"}, []string{`RETRY_INITIAL_INTERVAL="x"`, "RETRY_MAX_INTERVAL=11m0s: must be between 1ms and 10m0s"}},
		{map[string]string{"NAK_DELAY": "x", "NAK_DELAY_MAX": "25h"}, []string{`NAK_DELAY="x"`, "NAK_DELAY_MAX=25h0m0s: must be between"}},
	} {
		_, err := Load(env(tt.vars))
		if err == nil {
			t.Errorf("%v: loaded", tt.vars)
			continue
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
			t.Errorf("%v: %d errors, want %d: %v", tt.vars, n, len(tt.want), err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: the error lacks %q: %v", tt.vars, w, err)
			}
		}
	}
}
