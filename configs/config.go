// Package configs turns the environment into one validated Config, so every
// setting has a single name, a single default and a single place that checks it.
package configs

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/social/user-events-router/redact"
)

// Config is every setting of the router. The zero value is not useful: build
// it with Load, which applies Defaults and then the environment.
type Config struct {
	// NATSURL is the broker to consume from; empty starts an embedded server.
	NATSURL string
	// NATSListen is where the embedded server listens (host:port).
	NATSListen string
	// Stream, Subject and Durable name the JetStream resources shared with the Auth Service.
	Stream  string
	Subject string
	Durable string

	// Broker credentials and TLS. At most one of user/password, token, creds
	// file and nkey seed file.
	NATSUser     string
	NATSPassword string
	NATSToken    string
	NATSCreds    string
	NATSNKeySeed string
	NATSCA       string
	NATSCert     string
	NATSKey      string

	// Settings of the durable consumer when the router creates it. An
	// existing consumer is used as found.
	AckWait       time.Duration
	MaxDeliver    int
	MaxAckPending int
	// Consumer is the kind of durable the router creates: ConsumerPinned
	// (a pull consumer whose one pinned client holds the stream's order,
	// with replicas as hot standbys; nats-server 2.11+), ConsumerPush (a
	// push consumer with a deliver group, as the monolith's old subscriber
	// made), or ConsumerAuto (pinned where the server supports it).
	Consumer string
	// PinnedTTL is how long the pinned client may go without pulling
	// before the server pins a standby instead: the failover bound.
	PinnedTTL time.Duration

	// MaxInFlight is how many JetStream messages one process holds at
	// once (received, not yet acked or nacked).
	MaxInFlight int
	// MaxInFlightBytes bounds the bytes of those messages; a single larger
	// message is still handled, alone (see router.Subscriber).
	MaxInFlightBytes int64
	// Group commit: the commands of concurrent handlers are written
	// CommitBatchMax at most per transaction; a transaction waits up to
	// CommitBatchWait for more; CommitWorkers transactions run at once.
	CommitBatchMax  int
	CommitBatchWait time.Duration
	CommitWorkers   int

	// DatabaseURL selects the SQL backend; empty means SQLite under DataDir.
	DatabaseURL string
	DataDir     string

	HTTPAddr   string
	AdminAddr  string
	AdminToken string
	// IngressToken, when set, is the bearer token the HTTP fallback requires.
	// Off by default: the Auth Service sends none.
	IngressToken string
	// IngressMaxBody is the largest event body the HTTP fallback accepts.
	IngressMaxBody int

	// HandlerTimeout bounds one attempt at handling a message.
	HandlerTimeout time.Duration
	// Retry policy inside the process, before the message is handed back to
	// the broker for a delayed redelivery.
	RetryMax             int
	RetryInitialInterval time.Duration
	RetryMaxInterval     time.Duration
	// NakDelay is the first redelivery delay; it doubles per delivery up to NakDelayMax.
	NakDelay    time.Duration
	NakDelayMax time.Duration
	// CloseTimeout bounds graceful shutdown.
	CloseTimeout time.Duration

	LogLevel  string
	LogFormat string

	// The monolith's side (`apply`): Apply also runs it inside serve;
	// ApplyDatabaseURL is the monolith's database (empty = DatabaseURL);
	// ApplyConsumerGroup is its watermill-sql consumer group; ApplyAdminAddr
	// serves its health and metrics when it runs on its own.
	Apply              bool
	ApplyDatabaseURL   string
	ApplyConsumerGroup string
	ApplyAdminAddr     string
	// CommandsRetention is how long commands are kept once every consumer
	// group has passed them (0 = forever); CommandsConsumerGroups must have
	// read a command before it is pruned, besides every group that has an
	// offset.
	CommandsRetention time.Duration
	// Comma-separated; see ConsumerGroupsToWait.
	CommandsConsumerGroups string
}

// Kinds of durable the router creates (Config.Consumer).
const (
	ConsumerAuto   = "auto"
	ConsumerPinned = "pinned"
	ConsumerPush   = "push"
)

// Defaults returns the configuration used when no variable is set.
func Defaults() Config {
	return Config{
		NATSListen:             "127.0.0.1:4222",
		Stream:                 "USER_EVENTS",
		Subject:                "user.events.*",
		Durable:                "social-backend-consumer",
		AckWait:                30 * time.Second,
		MaxDeliver:             -1,
		MaxAckPending:          1000,
		Consumer:               ConsumerAuto,
		PinnedTTL:              10 * time.Second,
		MaxInFlight:            1000,
		MaxInFlightBytes:       DefaultMaxInFlightBytes,
		CommitBatchMax:         500,
		CommitBatchWait:        time.Millisecond,
		CommitWorkers:          2,
		DataDir:                "./data",
		HTTPAddr:               "127.0.0.1:3000",
		IngressMaxBody:         64 << 10,
		AdminAddr:              "127.0.0.1:8081",
		HandlerTimeout:         5 * time.Second,
		RetryMax:               3,
		RetryInitialInterval:   100 * time.Millisecond,
		RetryMaxInterval:       2 * time.Second,
		NakDelay:               time.Second,
		NakDelayMax:            time.Minute,
		CloseTimeout:           30 * time.Second,
		LogLevel:               "info",
		ApplyConsumerGroup:     "monolith-apply",
		ApplyAdminAddr:         "127.0.0.1:8082",
		CommandsRetention:      7 * 24 * time.Hour,
		CommandsConsumerGroups: "monolith-apply",
	}
}

// DefaultMaxInFlightBytes is the default byte budget for JetStream messages
// in flight. Real events (under 1 KiB) never reach it at MAX_IN_FLIGHT
// (1,000 × 1 KiB is 1 MiB); it matters for a backlog of large messages,
// whose poison path holds several copies of each message it handles. At
// 32 MiB such a backlog (1 MiB each) peaked at 247–320 MiB, over the
// Kubernetes manifest's 256 Mi in two of four runs; at 16 MiB at 165–204 MiB (README
// "Memory").
const DefaultMaxInFlightBytes = 16 << 20

// Variable describes one environment variable, for the README and for `config` output.
type Variable struct {
	Name    string
	Default string
	Help    string
	Secret  bool
}

// field binds a variable to the Config field it sets.
type field struct {
	Variable
	set func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 500ms, 30s, 2m)")
		}
		*p(c) = d
		return nil
	}
}

func integer(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		*p(c) = n
		return nil
	}
}

func bytesize(p func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not a number of bytes")
		}
		*p(c) = n
		return nil
	}
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not a boolean (1, true, 0 or false)")
		}
		*p(c) = b
		return nil
	}
}

func fields() []field {
	d := Defaults()
	return []field{
		{Variable{"NATS_URL", "", "broker URL(s), comma-separated; empty starts an embedded NATS server with JetStream persisted under DATA_DIR", false}, str(func(c *Config) *string { return &c.NATSURL })},
		{Variable{"NATS_LISTEN", d.NATSListen, "listen address of the embedded NATS server (only when NATS_URL is empty)", false}, str(func(c *Config) *string { return &c.NATSListen })},
		{Variable{"NATS_STREAM", d.Stream, "JetStream stream holding the user events", false}, str(func(c *Config) *string { return &c.Stream })},
		{Variable{"NATS_SUBJECT", d.Subject, "subject filter of the durable consumer", false}, str(func(c *Config) *string { return &c.Subject })},
		{Variable{"NATS_DURABLE", d.Durable, "durable consumer shared by all router replicas", false}, str(func(c *Config) *string { return &c.Durable })},
		{Variable{"NATS_USER", "", "broker user name (with NATS_PASSWORD)", false}, str(func(c *Config) *string { return &c.NATSUser })},
		{Variable{"NATS_PASSWORD", "", "broker password", true}, str(func(c *Config) *string { return &c.NATSPassword })},
		{Variable{"NATS_TOKEN", "", "broker token", true}, str(func(c *Config) *string { return &c.NATSToken })},
		{Variable{"NATS_CREDS", "", "path of a .creds file (JWT + nkey)", false}, str(func(c *Config) *string { return &c.NATSCreds })},
		{Variable{"NATS_NKEY_SEED", "", "path of an nkey seed file", false}, str(func(c *Config) *string { return &c.NATSNKeySeed })},
		{Variable{"NATS_CA", "", "path of a PEM CA bundle to verify the broker", false}, str(func(c *Config) *string { return &c.NATSCA })},
		{Variable{"NATS_CERT", "", "path of a PEM client certificate (with NATS_KEY)", false}, str(func(c *Config) *string { return &c.NATSCert })},
		{Variable{"NATS_KEY", "", "path of the client certificate's PEM key", false}, str(func(c *Config) *string { return &c.NATSKey })},
		{Variable{"NATS_ACK_WAIT", d.AckWait.String(), "ack wait of the durable when the router creates it", false}, dur(func(c *Config) *time.Duration { return &c.AckWait })},
		{Variable{"NATS_MAX_DELIVER", strconv.Itoa(d.MaxDeliver), "max deliveries of the durable when the router creates it (-1 = unlimited)", false}, integer(func(c *Config) *int { return &c.MaxDeliver })},
		{Variable{"NATS_MAX_ACK_PENDING", strconv.Itoa(d.MaxAckPending), "max unacknowledged messages of the durable when the router creates it", false}, integer(func(c *Config) *int { return &c.MaxAckPending })},
		{Variable{"NATS_CONSUMER", d.Consumer, "kind of durable the router creates when none exists: pinned (a pull consumer with one active replica and hot standbys, nats-server 2.11+), push (a push consumer with a deliver group), or auto (pinned where the server supports it, else push)", false}, str(func(c *Config) *string { return &c.Consumer })},
		{Variable{"NATS_PINNED_TTL", d.PinnedTTL.String(), "on a pinned durable, how long the active replica may go without pulling before a standby takes over (the failover bound)", false}, dur(func(c *Config) *time.Duration { return &c.PinnedTTL })},
		{Variable{"MAX_IN_FLIGHT", strconv.Itoa(d.MaxInFlight), "JetStream messages one router process handles at once (also bounded by the durable's max ack pending)", false}, integer(func(c *Config) *int { return &c.MaxInFlight })},
		{Variable{"MAX_IN_FLIGHT_BYTES", strconv.FormatInt(d.MaxInFlightBytes, 10), "bytes of JetStream messages one router process holds at once; a larger message is handled alone (see README, Memory)", false}, bytesize(func(c *Config) *int64 { return &c.MaxInFlightBytes })},
		{Variable{"COMMIT_BATCH_MAX", strconv.Itoa(d.CommitBatchMax), "most commands written in one SQL transaction", false}, integer(func(c *Config) *int { return &c.CommitBatchMax })},
		{Variable{"COMMIT_BATCH_WAIT", d.CommitBatchWait.String(), "how long a transaction that is not full waits for more commands (0 = commit what is queued at once)", false}, dur(func(c *Config) *time.Duration { return &c.CommitBatchWait })},
		{Variable{"COMMIT_WORKERS", strconv.Itoa(d.CommitWorkers), "SQL transactions writing commands at once", false}, integer(func(c *Config) *int { return &c.CommitWorkers })},
		{Variable{"DATABASE_URL", "", "postgres://…, mysql://… or sqlite:PATH; empty = sqlite:$DATA_DIR/router.db", true}, str(func(c *Config) *string { return &c.DatabaseURL })},
		{Variable{"DATA_DIR", d.DataDir, "directory for the embedded NATS store and the default SQLite file", false}, str(func(c *Config) *string { return &c.DataDir })},
		{Variable{"HTTP_ADDR", d.HTTPAddr, "listen address of the HTTP fallback ingress", false}, str(func(c *Config) *string { return &c.HTTPAddr })},
		{Variable{"ADMIN_ADDR", d.AdminAddr, "listen address of health, metrics and the poison API", false}, str(func(c *Config) *string { return &c.AdminAddr })},
		{Variable{"ADMIN_TOKEN", "", "bearer token for the admin API (required when ADMIN_ADDR is not loopback)", true}, str(func(c *Config) *string { return &c.AdminToken })},
		{Variable{"INGRESS_TOKEN", "", "bearer token the HTTP fallback requires (off by default: the Auth Service sends none)", true}, str(func(c *Config) *string { return &c.IngressToken })},
		{Variable{"INGRESS_MAX_BODY", strconv.Itoa(d.IngressMaxBody), "largest event body the HTTP fallback accepts, in bytes (larger: 413)", false}, integer(func(c *Config) *int { return &c.IngressMaxBody })},
		{Variable{"HANDLER_TIMEOUT", d.HandlerTimeout.String(), "limit for one attempt at handling a message", false}, dur(func(c *Config) *time.Duration { return &c.HandlerTimeout })},
		{Variable{"RETRY_MAX", strconv.Itoa(d.RetryMax), "in-process retries of a transient failure before handing the message back to NATS", false}, integer(func(c *Config) *int { return &c.RetryMax })},
		{Variable{"RETRY_INITIAL_INTERVAL", d.RetryInitialInterval.String(), "first in-process retry delay (doubles, with jitter)", false}, dur(func(c *Config) *time.Duration { return &c.RetryInitialInterval })},
		{Variable{"RETRY_MAX_INTERVAL", d.RetryMaxInterval.String(), "largest in-process retry delay", false}, dur(func(c *Config) *time.Duration { return &c.RetryMaxInterval })},
		{Variable{"NAK_DELAY", d.NakDelay.String(), "first redelivery delay after in-process retries are spent (doubles per delivery)", false}, dur(func(c *Config) *time.Duration { return &c.NakDelay })},
		{Variable{"NAK_DELAY_MAX", d.NakDelayMax.String(), "largest redelivery delay", false}, dur(func(c *Config) *time.Duration { return &c.NakDelayMax })},
		{Variable{"CLOSE_TIMEOUT", d.CloseTimeout.String(), "limit for graceful shutdown", false}, dur(func(c *Config) *time.Duration { return &c.CloseTimeout })},
		{Variable{"LOG_LEVEL", d.LogLevel, "debug, info, warn or error", false}, str(func(c *Config) *string { return &c.LogLevel })},
		{Variable{"LOG_FORMAT", "", "json or text; empty = json, or text when stderr is a terminal", false}, str(func(c *Config) *string { return &c.LogFormat })},
		{Variable{"APPLY", "false", "also run `apply` inside `serve` (one process for small deployments)", false}, boolean(func(c *Config) *bool { return &c.Apply })},
		{Variable{"APPLY_DATABASE_URL", "", "the monolith's database that `apply` keeps user_identities and user_profiles in; empty = DATABASE_URL", true}, str(func(c *Config) *string { return &c.ApplyDatabaseURL })},
		{Variable{"APPLY_CONSUMER_GROUP", d.ApplyConsumerGroup, "watermill-sql consumer group `apply` reads the commands table as", false}, str(func(c *Config) *string { return &c.ApplyConsumerGroup })},
		{Variable{"APPLY_ADMIN_ADDR", d.ApplyAdminAddr, "listen address of `apply`'s health and metrics (when it runs on its own)", false}, str(func(c *Config) *string { return &c.ApplyAdminAddr })},
		{Variable{"COMMANDS_RETENTION", "168h0m0s", "how long a command is kept once every consumer group has read it (0 = forever); pruned hourly by serve, or by `prune`", false}, dur(func(c *Config) *time.Duration { return &c.CommandsRetention })},
		{Variable{"COMMANDS_CONSUMER_GROUPS", d.CommandsConsumerGroups, "consumer groups that must have read a command before it is pruned, comma-separated (besides every group with an offset)", false}, str(func(c *Config) *string { return &c.CommandsConsumerGroups })},
	}
}

// Variables lists every environment variable with its default, in documentation order.
func Variables() []Variable {
	fs := fields()
	out := make([]Variable, len(fs))
	for i, f := range fs {
		out[i] = f.Variable
	}
	return out
}

// Load builds a Config from Defaults and the variables getenv reports, then
// validates it. The error names every bad variable at once.
func Load(getenv func(string) string) (Config, error) {
	c := Defaults()
	var errs []error
	var unread []string // variables whose value could not be read
	for _, f := range fields() {
		v := strings.TrimSpace(getenv(f.Name))
		if v == "" {
			continue
		}
		if err := f.set(&c, v); err != nil {
			shown := v
			if f.Secret {
				shown = "(redacted)"
			}
			errs = append(errs, fmt.Errorf("%s=%q: %w", f.Name, shown, err))
			unread = append(unread, f.Name)
		}
	}
	if v := strings.TrimSpace(getenv("SUBSCRIBERS")); v != "" {
		errs = append(errs, fmt.Errorf("SUBSCRIBERS=%q: no longer used; the router now handles up to MAX_IN_FLIGHT messages at once (default %d): unset SUBSCRIBERS", v, Defaults().MaxInFlight))
	}
	// Every bad variable is named at once, the unreadable ones and those
	// that break a rule; a rule between variables is left out when one of
	// them is unreadable (it would judge a default nobody set).
	if err := c.validate(unread); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Validate checks every rule and joins all violations, each naming the variable.
func (c Config) Validate() error { return c.validate(nil) }

// validate is Validate, leaving out the rules between variables that
// involve one of unread: their values are defaults, kept because what was
// set could not be read (Load reports that).
func (c Config) validate(unread []string) error {
	read := func(names ...string) bool {
		for _, n := range names {
			if slices.Contains(unread, n) {
				return false
			}
		}
		return true
	}
	var errs []error
	bad := func(name string, value any, rule string) {
		errs = append(errs, fmt.Errorf("%s=%v: %s", name, value, rule))
	}
	// Every number has a range: an absurd value is refused here, naming
	// the variable, rather than overflowing arithmetic later.
	intIn := func(name string, v, lo, hi int64, unit string) bool {
		if v < lo || v > hi {
			bad(name, v, fmt.Sprintf("must be between %d and %d%s", lo, hi, unit))
			return false
		}
		return true
	}
	durIn := func(name string, v, lo, hi time.Duration) bool {
		if v < lo || v > hi {
			bad(name, v, fmt.Sprintf("must be between %v and %v", lo, hi))
			return false
		}
		return true
	}
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			bad("NATS_LISTEN", quote(c.NATSListen), "must be host:port")
		}
	}
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			if _, err := url.Parse(strings.TrimSpace(u)); err != nil {
				bad("NATS_URL", quote(redact.URL(c.NATSURL)), "not a URL list")
				break
			}
		}
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". *>\t") {
		bad("NATS_STREAM", quote(c.Stream), "must be a non-empty name without '.', '*', '>' or spaces")
	}
	if c.Subject == "" || strings.ContainsAny(c.Subject, " \t") {
		bad("NATS_SUBJECT", quote(c.Subject), "must be a non-empty subject without spaces")
	}
	if c.Durable == "" || strings.ContainsAny(c.Durable, ". *>\t") {
		bad("NATS_DURABLE", quote(c.Durable), "must be a non-empty name without '.', '*', '>' or spaces")
	}
	auth := 0
	for _, set := range []bool{c.NATSUser != "" || c.NATSPassword != "", c.NATSToken != "", c.NATSCreds != "", c.NATSNKeySeed != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		errs = append(errs, errors.New("NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS and NATS_NKEY_SEED: set at most one way to authenticate"))
	}
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		errs = append(errs, errors.New("NATS_USER and NATS_PASSWORD: set both or neither"))
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		errs = append(errs, errors.New("NATS_CERT and NATS_KEY: set both or neither"))
	}
	// Ranges: wide enough for any real deployment, narrow enough that no
	// sum or product of them overflows (AttemptBudget saturates anyway).
	ackWaitOK := durIn("NATS_ACK_WAIT", c.AckWait, time.Second, 24*time.Hour)
	if c.MaxDeliver != -1 && (c.MaxDeliver < 1 || c.MaxDeliver > 10000) {
		bad("NATS_MAX_DELIVER", c.MaxDeliver, "must be -1 (unlimited) or between 1 and 10000")
	}
	intIn("NATS_MAX_ACK_PENDING", int64(c.MaxAckPending), 1, 1000000, "")
	switch c.Consumer {
	case ConsumerAuto, ConsumerPinned, ConsumerPush:
	default:
		bad("NATS_CONSUMER", quote(c.Consumer), "must be auto, pinned or push")
	}
	durIn("NATS_PINNED_TTL", c.PinnedTTL, 3*time.Second, 10*time.Minute)
	intIn("MAX_IN_FLIGHT", int64(c.MaxInFlight), 1, 65536, "")
	// At least one event of the largest size the router accepts.
	intIn("MAX_IN_FLIGHT_BYTES", c.MaxInFlightBytes, 64<<10, 16<<30, " bytes")
	// 10000 rows of 3 values stay under every dialect's limit on
	// placeholders per statement (SQLite's is the lowest, 32766).
	intIn("COMMIT_BATCH_MAX", int64(c.CommitBatchMax), 1, 10000, "")
	durIn("COMMIT_BATCH_WAIT", c.CommitBatchWait, 0, time.Second)
	intIn("COMMIT_WORKERS", int64(c.CommitWorkers), 1, 64, "")
	if c.DatabaseURL != "" && !hasAnyPrefix(c.DatabaseURL, "postgres://", "postgresql://", "mysql://", "sqlite:") {
		errs = append(errs, errors.New("DATABASE_URL: must start with postgres://, postgresql://, mysql:// or sqlite:"))
	}
	if c.DataDir == "" {
		bad("DATA_DIR", `""`, "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", quote(c.HTTPAddr), "must be host:port or :port")
	}
	if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
		bad("ADMIN_ADDR", quote(c.AdminAddr), "must be host:port or :port")
	}
	// Every listener needs a port of its own: the embedded NATS server's
	// too, when there is one.
	listeners := []struct{ name, addr string }{{"HTTP_ADDR", c.HTTPAddr}, {"ADMIN_ADDR", c.AdminAddr}}
	if c.NATSURL == "" {
		listeners = append(listeners, struct{ name, addr string }{"NATS_LISTEN", c.NATSListen})
	}
	for i, a := range listeners {
		for _, b := range listeners[i+1:] {
			if port := sameListener(a.addr, b.addr); port != 0 {
				errs = append(errs, fmt.Errorf("%s=%q and %s=%q: both listen on port %d (an address without a host, or 0.0.0.0 or [::], is every interface); each listener needs a port of its own", b.name, b.addr, a.name, a.addr, port))
			}
		}
	}
	intIn("INGRESS_MAX_BODY", int64(c.IngressMaxBody), 1024, 1<<20, " bytes")
	if Exposed(c.AdminAddr) && c.AdminToken == "" {
		errs = append(errs, fmt.Errorf("ADMIN_TOKEN: required when ADMIN_ADDR=%q is reachable beyond this machine (the poison API can replay and delete); set a token or bind ADMIN_ADDR to 127.0.0.1", c.AdminAddr))
	}
	// The retry budget is compared with the ack wait only when what it
	// is made of is in range: otherwise its error would only repeat theirs.
	budgetOK := durIn("HANDLER_TIMEOUT", c.HandlerTimeout, time.Millisecond, time.Hour)
	budgetOK = intIn("RETRY_MAX", int64(c.RetryMax), 0, 100, "") && budgetOK
	switch {
	case !read("RETRY_INITIAL_INTERVAL", "RETRY_MAX_INTERVAL"):
		// Each on its own range only.
		if read("RETRY_INITIAL_INTERVAL") {
			durIn("RETRY_INITIAL_INTERVAL", c.RetryInitialInterval, time.Millisecond, time.Minute)
		}
		if read("RETRY_MAX_INTERVAL") {
			durIn("RETRY_MAX_INTERVAL", c.RetryMaxInterval, time.Millisecond, 10*time.Minute)
		}
		budgetOK = false
	case durIn("RETRY_INITIAL_INTERVAL", c.RetryInitialInterval, time.Millisecond, time.Minute):
		if c.RetryMaxInterval < c.RetryInitialInterval {
			bad("RETRY_MAX_INTERVAL", c.RetryMaxInterval, "must be at least RETRY_INITIAL_INTERVAL")
			budgetOK = false
		} else {
			budgetOK = durIn("RETRY_MAX_INTERVAL", c.RetryMaxInterval, c.RetryInitialInterval, 10*time.Minute) && budgetOK
		}
	default:
		budgetOK = false
	}
	budgetOK = budgetOK && read("HANDLER_TIMEOUT", "RETRY_MAX", "NATS_ACK_WAIT")
	switch {
	case !read("NAK_DELAY"):
		durIn("NAK_DELAY_MAX", c.NakDelayMax, 0, 24*time.Hour)
	case !read("NAK_DELAY_MAX"):
		durIn("NAK_DELAY", c.NakDelay, 0, time.Hour)
	case durIn("NAK_DELAY", c.NakDelay, 0, time.Hour):
		if c.NakDelayMax < c.NakDelay {
			bad("NAK_DELAY_MAX", c.NakDelayMax, "must be at least NAK_DELAY")
		} else {
			durIn("NAK_DELAY_MAX", c.NakDelayMax, c.NakDelay, 24*time.Hour)
		}
	}
	durIn("CLOSE_TIMEOUT", c.CloseTimeout, time.Millisecond, time.Hour)
	if budget := c.AttemptBudget(); ackWaitOK && budgetOK && budget >= c.AckWait {
		errs = append(errs, fmt.Errorf("NATS_ACK_WAIT=%v: must exceed the in-process retry budget %v (HANDLER_TIMEOUT × (RETRY_MAX+1) + backoff), or the broker redelivers a message still being retried", c.AckWait, budget))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", quote(c.LogLevel), "must be debug, info, warn or error")
	}
	switch c.LogFormat {
	case "", "json", "text":
	default:
		bad("LOG_FORMAT", quote(c.LogFormat), "must be json or text")
	}
	if c.ApplyDatabaseURL != "" && !hasAnyPrefix(c.ApplyDatabaseURL, "postgres://", "postgresql://", "mysql://", "sqlite:") {
		errs = append(errs, errors.New("APPLY_DATABASE_URL: must start with postgres://, postgresql://, mysql:// or sqlite:"))
	}
	if c.ApplyConsumerGroup == "" || len(c.ApplyConsumerGroup) > 255 {
		bad("APPLY_CONSUMER_GROUP", quote(c.ApplyConsumerGroup), "must be 1 to 255 bytes")
	}
	if _, _, err := net.SplitHostPort(c.ApplyAdminAddr); err != nil {
		bad("APPLY_ADMIN_ADDR", quote(c.ApplyAdminAddr), "must be host:port or :port")
	}
	if c.CommandsRetention != 0 && (c.CommandsRetention < time.Hour || c.CommandsRetention > 10*365*24*time.Hour) {
		bad("COMMANDS_RETENTION", c.CommandsRetention, "must be 0 (keep forever) or between 1h and 87600h (10 years)")
	}
	for _, g := range c.ConsumerGroupsToWait() {
		if len(g) > 255 {
			bad("COMMANDS_CONSUMER_GROUPS", quote(g), "each group must be at most 255 bytes")
		}
	}
	return errors.Join(errs...)
}

// AttemptBudget is the longest one delivery can spend in the process: every
// attempt timing out plus the largest backoff before each retry. It
// saturates at the longest time.Duration instead of overflowing, and takes
// time proportional to the log of the intervals, not to RETRY_MAX, so that
// Validate can compute it for any values it is about to refuse.
func (c Config) AttemptBudget() time.Duration {
	retries := int64(max(c.RetryMax, 0))
	budget := addSat(mulSat(c.HandlerTimeout, retries), max(c.HandlerTimeout, 0))
	wait := max(c.RetryInitialInterval, 0)
	ceiling := max(c.RetryMaxInterval, 0)
	for i := int64(0); i < retries; i++ {
		if wait >= ceiling || wait == 0 {
			// Every remaining retry waits the same: add them at once.
			w := min(wait, ceiling)
			return addSat(budget, mulSat(addSat(w, w/2), retries-i))
		}
		budget = addSat(budget, addSat(wait, wait/2)) // jitter adds at most half
		wait = min(addSat(wait, wait), ceiling)
	}
	return budget
}

// addSat is a+b for non-negative durations, saturating at the maximum.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// mulSat is d×n for a non-negative n, saturating at the maximum; a
// negative d counts as 0.
func mulSat(d time.Duration, n int64) time.Duration {
	if d <= 0 || n <= 0 {
		return 0
	}
	if d > math.MaxInt64/time.Duration(n) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// UnknownVariables returns a warning for each of names (environment
// variable names) that looks meant for the router but is not one of its
// Variables: it starts with one of their prefixes (NATS_, RETRY_, …) or
// spells one of them without its underscores. Each warning names the
// variable probably meant, when one is close. A variable the router ignores
// is otherwise silent: NATS_MAXDELIVER=3 would leave the default in force.
// Kubernetes' service links (NATS_SERVICE_HOST, NATS_PORT_4222_TCP, …) and
// the standard HTTP_PROXY are not reported.
func UnknownVariables(names []string) []string {
	known := map[string]bool{}
	squashed := map[string]string{}
	prefixes := map[string]bool{}
	for _, v := range Variables() {
		known[v.Name] = true
		squashed[strings.ReplaceAll(v.Name, "_", "")] = v.Name
		if p, _, ok := strings.Cut(v.Name, "_"); ok {
			prefixes[p+"_"] = true
		}
	}
	var out []string
	for _, name := range names {
		if known[name] || name == "SUBSCRIBERS" || foreignVariable(name) {
			continue
		}
		_, meant := squashed[strings.ReplaceAll(name, "_", "")]
		p, _, split := strings.Cut(name, "_")
		if !meant && !(split && prefixes[p+"_"]) {
			continue
		}
		w := name + " is not a router variable and is ignored"
		if near := nearestVariable(name); near != "" {
			w += "; did you mean " + near + "?"
		}
		out = append(out, w)
	}
	return out
}

// serviceLink matches the variables Kubernetes sets for each Service.
var serviceLink = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)

func foreignVariable(name string) bool {
	return name == "HTTP_PROXY" || serviceLink.MatchString(name)
}

// nearestVariable is the router variable name is short for (NATS_NKEY,
// the NATS CLI's name, for NATS_NKEY_SEED), or else the one closest to it
// in edit distance, or "" when none is within three edits.
func nearestVariable(name string) string {
	for _, v := range Variables() {
		if strings.HasPrefix(v.Name, name+"_") {
			return v.Name
		}
	}
	best, bestD := "", 4
	for _, v := range Variables() {
		if d := editDistance(name, v.Name); d < bestD {
			best, bestD = v.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// MemoryLimit is the soft memory limit serve gives the Go runtime when the
// environment sets no GOMEMLIMIT: twice the byte budget (the messages held
// and what is on its way or being handed back), 64 KiB per message in
// flight (what handling one costs, README "What it reaches") and 32 MiB
// for the rest. Real events never come near it: the collector's GOGC
// target is lower. A backlog of large messages does, and then the
// collector runs more often instead of letting garbage grow the heap to
// three times what is live.
func (c Config) MemoryLimit() int64 {
	return 2*c.MaxInFlightBytes + int64(c.MaxInFlight)*64<<10 + 32<<20
}

// ConsumerGroupsToWait lists COMMANDS_CONSUMER_GROUPS.
func (c Config) ConsumerGroupsToWait() []string {
	var out []string
	for _, g := range strings.Split(c.CommandsConsumerGroups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// ApplyDatabaseURLOrDefault is APPLY_DATABASE_URL, or the router's database.
func (c Config) ApplyDatabaseURLOrDefault() string {
	if c.ApplyDatabaseURL != "" {
		return c.ApplyDatabaseURL
	}
	return c.DatabaseURLOrDefault()
}

// DatabaseURLOrDefault is DATABASE_URL, or the SQLite file under DATA_DIR.
func (c Config) DatabaseURLOrDefault() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return "sqlite:" + filepath.Join(c.DataDir, "router.db")
}

// LogValue keeps secrets out of logs: passwords and tokens are replaced and
// the URLs pass through redact.URL.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("nats_url", redact.URL(c.NATSURL)),
		slog.String("nats_listen", c.NATSListen),
		slog.String("stream", c.Stream),
		slog.String("subject", c.Subject),
		slog.String("durable", c.Durable),
		slog.String("consumer", c.Consumer),
		slog.Duration("pinned_ttl", c.PinnedTTL),
		slog.String("nats_auth", c.natsAuthKind()),
		slog.String("database_url", redact.URL(c.DatabaseURLOrDefault())),
		slog.String("apply_database_url", redact.URL(c.ApplyDatabaseURLOrDefault())),
		slog.String("data_dir", c.DataDir),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("admin_addr", c.AdminAddr),
		slog.Bool("admin_token_set", c.AdminToken != ""),
		slog.Bool("ingress_token_set", c.IngressToken != ""),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int64("max_in_flight_bytes", c.MaxInFlightBytes),
		slog.Int("commit_batch_max", c.CommitBatchMax),
		slog.Duration("commit_batch_wait", c.CommitBatchWait),
		slog.Int("commit_workers", c.CommitWorkers),
		slog.Duration("handler_timeout", c.HandlerTimeout),
		slog.Int("retry_max", c.RetryMax),
		slog.Duration("close_timeout", c.CloseTimeout),
	)
}

func (c Config) natsAuthKind() string {
	switch {
	case c.NATSUser != "":
		return "user:" + c.NATSUser
	case c.NATSToken != "":
		return "token"
	case c.NATSCreds != "":
		return "creds"
	case c.NATSNKeySeed != "":
		return "nkey"
	}
	return "none"
}

// Exposed reports whether a server listening on addr is reachable beyond
// this machine: true unless the host is a loopback address or "localhost".
// An empty host (":8081") listens on every interface; an address that does
// not parse counts as exposed.
func Exposed(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// sameListener reports the port that listening on a and then on b would
// both take, or 0: the same fixed port (a name such as "http" is looked up
// as the listener would) on the same address, or on every interface for
// either (":8081" takes 127.0.0.1:8081 too, and so does "[::]:8081" on
// Linux). Port 0, or none, picks a free port each time. Two names, or a
// name and an address, are not resolved: if they meet, the second bind
// still fails naming its variable.
func sameListener(a, b string) int {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa == "" || pb == "" {
		return 0
	}
	na, errA := net.LookupPort("tcp", pa)
	nb, errB := net.LookupPort("tcp", pb)
	if errA != nil || errB != nil || na != nb || na == 0 {
		return 0
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	everywhere := func(h string, ip net.IP) bool { return h == "" || ip != nil && ip.IsUnspecified() }
	switch {
	case everywhere(ha, ia) || everywhere(hb, ib),
		ia != nil && ib != nil && ia.Equal(ib),
		ia == nil && ib == nil && strings.EqualFold(ha, hb):
		return na
	}
	return 0
}

func quote(s string) string { return strconv.Quote(s) }

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
