package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// authRetries is the Auth Service's schedule for the HTTP fallback
// (DESIGN §2): a try at once, then +1 s, then +3 s; only 200 counts, and
// after the third failure the event is dropped.
var authRetries = []time.Duration{0, time.Second, 3 * time.Second}

// authClient posts events sequentially the way the Auth Service does when
// NATS is unreachable. It runs on its own goroutine, so it records instead
// of failing the test.
type authClient struct {
	url    string
	client *http.Client
	ok     atomic.Int64 // events answered 200 so far
	// retrying counts the events being tried that have had a failed try
	// (at most one per client, as it posts sequentially).
	retrying atomic.Int64

	// Filled in by run and send, read after they return.
	accepted []string // user ids answered 200
	dropped  []string // user ids never answered 200 (may or may not be committed)
	retried  int      // events that needed more than one try
	// failures are the failed tries, "<user id>: <status or error>", for
	// the log.
	failures []string
}

func newAuthClient(addr string) *authClient {
	return &authClient{
		url: "http://" + addr + "/api/sync/users",
		// A fresh transport: a kept-alive connection to a killed process
		// must fail like it would for the Auth Service, not be shared
		// with other tests.
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}
}

// run posts every event until ctx ends; an event not yet tried when ctx
// ends is neither accepted nor dropped.
func (c *authClient) run(ctx context.Context, events []event) {
	defer c.client.CloseIdleConnections()
	for _, ev := range events {
		if ctx.Err() != nil {
			return
		}
		c.send(ctx, ev)
	}
}

// send tries one event on the Auth Service's schedule and records it as
// accepted (answered 200) or dropped; it reports whether it was accepted.
func (c *authClient) send(ctx context.Context, ev event) bool {
	ok := false
	for try, wait := range authRetries {
		if try > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			if ctx.Err() != nil {
				break
			}
			if try == 1 {
				c.retried++
			}
		}
		problem := c.post(ctx, ev.body)
		if problem == "" {
			ok = true
			break
		}
		c.failures = append(c.failures, fmt.Sprintf("%s try %d at %s: %s", ev.userID, try+1, time.Now().Format("15:04:05.000"), problem))
		if try == 0 {
			c.retrying.Add(1)
			defer c.retrying.Add(-1)
		}
	}
	if ok {
		c.accepted = append(c.accepted, ev.userID)
		c.ok.Add(1)
	} else {
		c.dropped = append(c.dropped, ev.userID)
	}
	return ok
}

// post returns "" when the router answered 200, else what went wrong.
func (c *authClient) post(ctx context.Context, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err.Error()
	}
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%s %s", resp.Status, bytes.TrimSpace(reply))
	}
	return ""
}
