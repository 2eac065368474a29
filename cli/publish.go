package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/schema"
)

const publishUsage = `usage: user-events-router publish [flags]

Sends user events the way the Auth Service does (plain JSON, no headers) to
NATS — -nats, else NATS_URL, else the embedded server a running serve
recorded in DATA_DIR/nats.addr, else NATS_LISTEN — or, with -http, to the
fallback ingress (three tries at 0 s, +1 s, +3 s; only 200 counts; with
INGRESS_TOKEN set, as its bearer token).

By default it generates well-formed events (-action, -n, -id, …). With
-payload or -file it sends those bytes exactly as given instead, to
-subject, -n times: to reproduce a poison entry (see poison show), or try
what the router makes of any body.

A run that takes longer than a second reports its progress on stderr every
second; the last line, on stdout, says how many events were sent.
`

// progressEvery is how often a long publish run reports on stderr.
const progressEvery = time.Second

func publishCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("publish", publishUsage)
	var (
		natsURL   = fs.String("nats", "", "NATS `URL` (default: NATS_URL, else the embedded server in DATA_DIR/nats.addr, else nats://NATS_LISTEN)")
		httpURL   = fs.String("http", "", "POST to this fallback `URL` (e.g. http://127.0.0.1:3000/api/sync/users) instead of NATS")
		action    = fs.String("action", "created", strings.Join(schema.ActionNames(), ", ")+", or lifecycle (each of them per user, in that order)")
		count     = fs.Int("n", 1, "number of users (with -payload or -file: times to send it)")
		rate      = fs.Float64("rate", 0, "events per second (0 = as fast as possible)")
		userID    = fs.String("id", "", "user id (default: a new UUID per user)")
		email     = fs.String("email", "", "email (default: derived from the username)")
		username  = fs.String("username", "", "username (default: generated)")
		requestID = fs.String("request-id", "", "request_id to send (the Auth Service often sends \"\")")
		subject   = fs.String("subject", "", "NATS `SUBJECT` (default: user.events.<action>; required with -payload or -file)")
		payload   = fs.String("payload", "", "send `BYTES` as the body, as they are")
		file      = fs.String("file", "", "send the bytes of the file at `PATH` as the body, as they are")
	)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("publish: unexpected argument %q", fs.Arg(0))
	}
	if *count < 1 {
		return usagef("publish: -n must be at least 1, got %d", *count)
	}
	if *httpURL != "" && fs.isSet("subject") {
		return usagef("publish: -subject is for NATS; the HTTP fallback has no subject (the router reads the action from the body)")
	}
	var events func(yield func(subject string, body []byte) error) error
	total := *count
	if fs.isSet("payload") || fs.isSet("file") {
		body, err := rawBody(fs, *payload, *file)
		if err != nil {
			return err
		}
		if *httpURL == "" && *subject == "" {
			return usagef("publish: -payload and -file need -subject (e.g. -subject user.events.created)")
		}
		events = func(yield func(string, []byte) error) error {
			for range *count {
				if err := yield(*subject, body); err != nil {
					return err
				}
			}
			return nil
		}
	} else {
		actions, err := actionsFor(*action)
		if err != nil {
			return err
		}
		if *count > 1 && (*userID != "" || *email != "" || *username != "") {
			return usagef("publish: -id, -email and -username name one user; use them with -n 1")
		}
		if *userID != "" {
			if _, err := uuid.Parse(*userID); err != nil {
				return usagef("publish: -id %q is not a UUID", *userID)
			}
		}
		gen := generator{count: *count, actions: actions, subject: *subject,
			user: schema.ProducerEvent{ID: *userID, Email: *email, Username: *username, RequestID: *requestID, ServiceName: schema.ProducerServiceName}}
		events, total = gen.events, *count*len(actions)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}

	var send func(ctx context.Context, subject string, body []byte) error
	if *httpURL != "" {
		send = httpSender(*httpURL, cfg.IngressToken)
	} else {
		url := *natsURL
		if url == "" {
			broker, err := findBroker(cfg)
			if err != nil {
				return err
			}
			if broker.Source == fromNATSListen {
				fmt.Fprintf(stderr, "publish: NATS_URL unset and no embedded server recorded in %s (is serve running with this DATA_DIR?): trying %s (NATS_LISTEN)\n", broker.AddrFile, broker.URL)
			}
			url = broker.URL
		}
		nc, err := broker.Connect(url, cfg, "user-events-router-publish", newLogger(cfg, io.Discard))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		send = func(ctx context.Context, subject string, body []byte) error {
			_, err := js.Publish(ctx, subject, body)
			return err
		}
	}

	var tick <-chan time.Time
	if *rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
		defer t.Stop()
		tick = t.C
	}
	prog := newProgress(stderr, total, progressEvery, time.Now, publishLine)
	sent := 0
	err = events(func(subject string, body []byte) error {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send(ctx, subject, body); err != nil {
			return fmt.Errorf("publish event %d to %s: %w", sent+1, subject, err)
		}
		sent++
		prog.update(sent)
		return nil
	})
	fmt.Fprintf(stdout, "published %d event(s)\n", sent)
	return err
}

// rawBody is the body of -payload or -file.
func rawBody(fs *commandFlags, payload, file string) ([]byte, error) {
	for _, name := range []string{"action", "id", "email", "username", "request-id"} {
		if fs.isSet(name) {
			return nil, usagef("publish: -%s describes a generated event; -payload and -file send their bytes as they are", name)
		}
	}
	switch {
	case fs.isSet("payload") && fs.isSet("file"):
		return nil, usagef("publish: -payload and -file: give one body")
	case fs.isSet("payload"):
		return []byte(payload), nil
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("publish: -file: %v", err)
	}
	return body, nil
}

// generator makes well-formed events the way the Auth Service does.
type generator struct {
	count   int
	actions []string
	subject string // "" = user.events.<action>
	user    schema.ProducerEvent
}

func (g generator) events(yield func(subject string, body []byte) error) error {
	for range g.count {
		u := g.user
		if u.ID == "" {
			u.ID = uuid.NewString()
		}
		if u.Username == "" {
			u.Username = "user_" + strings.ReplaceAll(u.ID[:8], "-", "")
		}
		if u.Email == "" {
			u.Email = u.Username + "@example.com"
		}
		for _, a := range g.actions {
			u.Action = a
			u.Timestamp = time.Now().UTC().Format(time.RFC3339)
			body, _ := json.Marshal(u)
			subject := g.subject
			if subject == "" {
				subject = "user.events." + a
			}
			if err := yield(subject, body); err != nil {
				return err
			}
		}
	}
	return nil
}

// actionsFor is the actions one -action value sends per user, from
// schema's list: one of them, or all in lifecycle order.
func actionsFor(action string) ([]string, error) {
	if action == "lifecycle" {
		return schema.ActionNames(), nil
	}
	if _, ok := schema.LookupAction(action); ok {
		return []string{action}, nil
	}
	return nil, usagef("publish: -action must be %s or lifecycle, got %q", strings.Join(schema.ActionNames(), ", "), action)
}

// httpSender posts like the Auth Service's fallback: only Content-Type
// (and, when INGRESS_TOKEN is set, the bearer token the ingress then
// requires), three tries at 0 s, +1 s and +3 s, and only 200 counts as
// success. A 401 is not tried again: the token would not change.
func httpSender(url, token string) func(ctx context.Context, subject string, body []byte) error {
	client := &http.Client{Timeout: 10 * time.Second}
	waits := []time.Duration{0, time.Second, 3 * time.Second}
	return func(ctx context.Context, _ string, body []byte) error {
		var last error
		for _, w := range waits {
			select {
			case <-time.After(w):
			case <-ctx.Done():
				return ctx.Err()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return usagef("publish: -http %q: %v", url, err)
			}
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				last = err
				continue
			}
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			// The reply is the server's: escaped, so that it cannot drive
			// the terminal (as healthcheck does).
			last = fmt.Errorf("status %d: %s", resp.StatusCode, schema.PrintableText(strings.TrimSpace(string(msg)), 512))
			if resp.StatusCode == http.StatusUnauthorized {
				if token == "" {
					return fmt.Errorf("%w (the ingress wants a token: set INGRESS_TOKEN to the router's)", last)
				}
				return fmt.Errorf("%w (INGRESS_TOKEN is not the router's)", last)
			}
		}
		return errors.Join(errors.New("gave up after 3 tries"), last)
	}
}
