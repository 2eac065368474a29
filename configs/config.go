// Package configs turns the environment into one validated Config, so every
// setting has a single name, a single default and a single place that checks it.
package configs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
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

	// MaxInFlight is how many JetStream messages one process holds at
	// once (received, not yet acked or nacked).
	MaxInFlight int
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
		MaxInFlight:            1000,
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
		{Variable{"MAX_IN_FLIGHT", strconv.Itoa(d.MaxInFlight), "JetStream messages one router process handles at once (also bounded by the durable's max ack pending)", false}, integer(func(c *Config) *int { return &c.MaxInFlight })},
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
		}
	}
	if v := strings.TrimSpace(getenv("SUBSCRIBERS")); v != "" {
		errs = append(errs, fmt.Errorf("SUBSCRIBERS=%q: no longer used; the router now handles up to MAX_IN_FLIGHT messages at once (default %d): unset SUBSCRIBERS", v, Defaults().MaxInFlight))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// Validate checks every rule and joins all violations, each naming the variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, value any, rule string) {
		errs = append(errs, fmt.Errorf("%s=%v: %s", name, value, rule))
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
	if c.AckWait < time.Second {
		bad("NATS_ACK_WAIT", c.AckWait, "must be at least 1s")
	}
	if c.MaxDeliver == 0 || c.MaxDeliver < -1 {
		bad("NATS_MAX_DELIVER", c.MaxDeliver, "must be -1 (unlimited) or at least 1")
	}
	if c.MaxAckPending < 1 {
		bad("NATS_MAX_ACK_PENDING", c.MaxAckPending, "must be at least 1")
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 65536 {
		bad("MAX_IN_FLIGHT", c.MaxInFlight, "must be between 1 and 65536")
	}
	// 10000 rows of 3 values stay under every dialect's limit on
	// placeholders per statement (SQLite's is the lowest, 32766).
	if c.CommitBatchMax < 1 || c.CommitBatchMax > 10000 {
		bad("COMMIT_BATCH_MAX", c.CommitBatchMax, "must be between 1 and 10000")
	}
	if c.CommitBatchWait < 0 || c.CommitBatchWait > time.Second {
		bad("COMMIT_BATCH_WAIT", c.CommitBatchWait, "must be between 0 and 1s")
	}
	if c.CommitWorkers < 1 || c.CommitWorkers > 64 {
		bad("COMMIT_WORKERS", c.CommitWorkers, "must be between 1 and 64")
	}
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
	if c.IngressMaxBody < 1024 || c.IngressMaxBody > 1<<20 {
		bad("INGRESS_MAX_BODY", c.IngressMaxBody, "must be between 1024 and 1048576 bytes")
	}
	if Exposed(c.AdminAddr) && c.AdminToken == "" {
		errs = append(errs, fmt.Errorf("ADMIN_TOKEN: required when ADMIN_ADDR=%q is reachable beyond this machine (the poison API can replay and delete); set a token or bind ADMIN_ADDR to 127.0.0.1", c.AdminAddr))
	}
	if c.HandlerTimeout <= 0 {
		bad("HANDLER_TIMEOUT", c.HandlerTimeout, "must be positive")
	}
	if c.RetryMax < 0 {
		bad("RETRY_MAX", c.RetryMax, "must be 0 or more")
	}
	if c.RetryInitialInterval <= 0 {
		bad("RETRY_INITIAL_INTERVAL", c.RetryInitialInterval, "must be positive")
	}
	if c.RetryMaxInterval < c.RetryInitialInterval {
		bad("RETRY_MAX_INTERVAL", c.RetryMaxInterval, "must be at least RETRY_INITIAL_INTERVAL")
	}
	if c.NakDelay < 0 {
		bad("NAK_DELAY", c.NakDelay, "must not be negative")
	}
	if c.NakDelayMax < c.NakDelay {
		bad("NAK_DELAY_MAX", c.NakDelayMax, "must be at least NAK_DELAY")
	}
	if c.CloseTimeout <= 0 {
		bad("CLOSE_TIMEOUT", c.CloseTimeout, "must be positive")
	}
	if budget := c.AttemptBudget(); budget >= c.AckWait {
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
	if c.CommandsRetention < 0 || (c.CommandsRetention > 0 && c.CommandsRetention < time.Hour) {
		bad("COMMANDS_RETENTION", c.CommandsRetention, "must be 0 (keep forever) or at least 1h")
	}
	for _, g := range c.ConsumerGroupsToWait() {
		if len(g) > 255 {
			bad("COMMANDS_CONSUMER_GROUPS", quote(g), "each group must be at most 255 bytes")
		}
	}
	return errors.Join(errs...)
}

// AttemptBudget is the longest one delivery can spend in the process: every
// attempt timing out plus the largest backoff before each retry.
func (c Config) AttemptBudget() time.Duration {
	budget := c.HandlerTimeout * time.Duration(c.RetryMax+1)
	wait := c.RetryInitialInterval
	for i := 0; i < c.RetryMax; i++ {
		budget += wait + wait/2 // jitter adds at most half
		wait = min(wait*2, c.RetryMaxInterval)
	}
	return budget
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
		slog.String("nats_auth", c.natsAuthKind()),
		slog.String("database_url", redact.URL(c.DatabaseURLOrDefault())),
		slog.String("apply_database_url", redact.URL(c.ApplyDatabaseURLOrDefault())),
		slog.String("data_dir", c.DataDir),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("admin_addr", c.AdminAddr),
		slog.Bool("admin_token_set", c.AdminToken != ""),
		slog.Bool("ingress_token_set", c.IngressToken != ""),
		slog.Int("max_in_flight", c.MaxInFlight),
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

func quote(s string) string { return strconv.Quote(s) }

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
