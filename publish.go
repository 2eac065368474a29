package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/schema"
)

func publishCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		natsURL   = fs.String("nats", "", "NATS URL (default: NATS_URL, else nats://NATS_LISTEN)")
		httpURL   = fs.String("http", "", "POST to this fallback URL (e.g. http://127.0.0.1:3000/api/sync/users) instead of NATS")
		action    = fs.String("action", "created", strings.Join(schema.ActionNames(), ", ")+", or lifecycle (each of them per user, in that order)")
		count     = fs.Int("n", 1, "number of users")
		rate      = fs.Float64("rate", 0, "events per second (0 = as fast as possible)")
		userID    = fs.String("id", "", "user id (default: a new UUID per user)")
		email     = fs.String("email", "", "email (default: derived from the username)")
		username  = fs.String("username", "", "username (default: generated)")
		requestID = fs.String("request-id", "", "request_id to send (the Auth Service often sends \"\")")
	)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("publish: unexpected argument %q", fs.Arg(0))
	}
	actions, err := actionsFor(*action)
	if err != nil {
		return err
	}
	if *count < 1 {
		return usagef("publish: -n must be at least 1, got %d", *count)
	}
	if *count > 1 && (*userID != "" || *email != "" || *username != "") {
		return usagef("publish: -id, -email and -username name one user; use them with -n 1")
	}
	if *userID != "" {
		if _, err := uuid.Parse(*userID); err != nil {
			return usagef("publish: -id %q is not a UUID", *userID)
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}

	var send func(ctx context.Context, subject string, body []byte) error
	if *httpURL != "" {
		send = httpSender(*httpURL)
	} else {
		url := *natsURL
		if url == "" {
			url = cfg.NATSURL
		}
		if url == "" {
			url = "nats://" + cfg.NATSListen
		}
		nc, err := router.Connect(url, cfg, "user-events-router-publish", newLogger(cfg, io.Discard))
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
	sent := 0
	for i := 0; i < *count; i++ {
		u := schema.ProducerEvent{ID: *userID, Email: *email, Username: *username, RequestID: *requestID, ServiceName: schema.ProducerServiceName}
		if u.ID == "" {
			u.ID = uuid.NewString()
		}
		if u.Username == "" {
			u.Username = "user_" + strings.ReplaceAll(u.ID[:8], "-", "")
		}
		if u.Email == "" {
			u.Email = u.Username + "@example.com"
		}
		for _, a := range actions {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			u.Action = a
			u.Timestamp = time.Now().UTC().Format(time.RFC3339)
			body, _ := json.Marshal(u)
			if err := send(ctx, "user.events."+a, body); err != nil {
				return fmt.Errorf("publish event %d (%s %s): %w", sent+1, a, u.ID, err)
			}
			sent++
		}
	}
	fmt.Fprintf(stdout, "published %d event(s)\n", sent)
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

// httpSender posts like the Auth Service's fallback: only Content-Type, three
// tries at 0 s, +1 s and +3 s, and only 200 counts as success.
func httpSender(url string) func(ctx context.Context, subject string, body []byte) error {
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
			last = fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		}
		return errors.Join(errors.New("gave up after 3 tries"), last)
	}
}
