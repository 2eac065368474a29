package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/schema"
)

// streamName is the Auth Service's stream, which the router consumes with
// its defaults.
const streamName = "USER_EVENTS"

// natsBroker is the JetStream server of a run: in process, or external.
type natsBroker struct {
	URL string
	nc  *nats.Conn
	js  jetstream.JetStream
	srv *server.Server
	// createdStream: the stream was made here and goes away at the end.
	createdStream bool
}

// startBroker starts a JetStream server in process (file store under dir,
// random loopback port), or connects to url.
func startBroker(ctx context.Context, url, dir string) (*natsBroker, error) {
	b := &natsBroker{URL: url}
	if url == "" {
		srv, err := server.NewServer(&server.Options{
			ServerName: "bench",
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   dir,
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 1 << 20,
		})
		if err != nil {
			return nil, fmt.Errorf("nats server: %w", err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			return nil, errors.New("nats server: not ready within 10s")
		}
		b.srv, b.URL = srv, srv.ClientURL()
	}
	nc, err := nats.Connect(b.URL, nats.Name("bench"))
	if err != nil {
		b.Close(context.Background())
		return nil, fmt.Errorf("connect to NATS at %s: %w", b.URL, err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.Close(context.Background())
		return nil, err
	}
	return b, nil
}

// ensureEmptyStream creates the Auth Service's stream exactly as it does
// (broker.AuthServiceStreamConfig). An existing stream is used only if it
// holds nothing and has no consumer, so the run measures only its own events.
func (b *natsBroker) ensureEmptyStream(ctx context.Context) error {
	s, err := b.js.Stream(ctx, streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := b.js.CreateStream(ctx, broker.AuthServiceStreamConfig(streamName)); err != nil {
			return fmt.Errorf("create stream %s: %w", streamName, err)
		}
		b.createdStream = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", streamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", streamName, err)
	}
	if info.State.Msgs > 0 || info.State.Consumers > 0 {
		return fmt.Errorf("stream %s on %s already holds %d messages and %d consumers; the benchmark needs it empty and unused (leave out -nats to use an in-process server)",
			streamName, b.URL, info.State.Msgs, info.State.Consumers)
	}
	return nil
}

// streamMsgs is how many messages a stream still holds.
func (b *natsBroker) streamMsgs(ctx context.Context, name string) (uint64, error) {
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// waitStreamEmpty polls until the stream holds no message (acks trail
// commits a little) or timeout passes, and returns what is left.
func (b *natsBroker) waitStreamEmpty(ctx context.Context, name string, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := b.streamMsgs(ctx, name)
		if err != nil || n == 0 || time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleanup removes from an external server what the run left there (unless
// keep): the stream if the run created it, else the router's durable.
func (b *natsBroker) cleanup(ctx context.Context, keep bool) {
	if keep || b.srv != nil || b.js == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if b.createdStream {
		_ = b.js.DeleteStream(ctx, streamName)
		return
	}
	_ = b.js.DeleteConsumer(ctx, streamName, configs.Defaults().Durable)
}

// Close closes the connection and stops an in-process server.
func (b *natsBroker) Close(context.Context) {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// event is one event to publish: the user it is about and its body.
type event struct {
	UserID string
	Body   []byte
}

const createdSubject = "user.events.created"

// newEvent is a created event for a new user, stamped now, with the empty
// request_id the Auth Service usually sends.
func newEvent() event {
	id := uuid.NewString()
	name := "bench_" + strings.ReplaceAll(id[:13], "-", "")
	body, _ := json.Marshal(schema.ProducerEvent{
		ID: id, Email: name + "@example.com", Username: name, Action: "created",
		Timestamp: time.Now().UTC().Format(time.RFC3339), ServiceName: schema.ProducerServiceName,
	})
	return event{UserID: id, Body: body}
}

// Event sizes -body-bytes accepts: a padded event is at least the
// unpadded one, and at most NATS's default max payload.
const (
	minBodyBytes = 512
	maxBodyBytes = 1 << 20
)

// newEvents makes n events; with bodyBytes > 0 each is padded with an
// unknown field ("pad", which the router ignores) to exactly that size.
func newEvents(n, bodyBytes int) []event {
	evs := make([]event, n)
	for i := range evs {
		evs[i] = newEvent()
		if bodyBytes > 0 {
			evs[i].Body = padBody(evs[i].Body, bodyBytes)
		}
	}
	return evs
}

// padBody adds "pad":"xxx…" to a JSON object to make it size bytes.
func padBody(body []byte, size int) []byte {
	head := append(bytes.TrimSuffix(body, []byte("}")), `,"pad":"`...)
	fill := max(size-len(head)-len(`"}`), 0)
	return append(append(head, bytes.Repeat([]byte("x"), fill)...), `"}`...)
}

// publishAll publishes the events with asynchronous JetStream publishes (no
// headers, like the Auth Service) and waits until every one is acked.
func (b *natsBroker) publishAll(ctx context.Context, subject string, evs []event) error {
	// At most about 64 MiB of publishes in flight, so that a backlog of
	// large events does not take gigabytes of the benchmark's memory.
	pending := 4096
	if len(evs) > 0 {
		pending = min(max((64<<20)/len(evs[0].Body), 16), 4096)
	}
	js, err := jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(pending))
	if err != nil {
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for i, ev := range evs {
		f, err := publishAsync(ctx, js, subject, ev.Body)
		if err != nil {
			return fmt.Errorf("publish event %d: %w", i+1, err)
		}
		futures = append(futures, f)
	}
	return awaitAcks(ctx, js, futures, 5*time.Minute)
}

// awaitAcks waits until every publish is acked and fails on the first that
// was not.
func awaitAcks(ctx context.Context, js jetstream.JetStream, futures []jetstream.PubAckFuture, timeout time.Duration) error {
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%d publishes not acked within %v", js.PublishAsyncPending(), timeout)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish event %d: %w", i+1, err)
		}
	}
	return nil
}

// publishAsync publishes without waiting for the ack; when too many acks
// are outstanding (a busy machine) it waits for them and tries again.
func publishAsync(ctx context.Context, js jetstream.JetStream, subject string, body []byte) (jetstream.PubAckFuture, error) {
	for {
		f, err := js.PublishAsync(subject, body)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return nil, fmt.Errorf("%d publishes not acked within a minute", js.PublishAsyncPending())
		}
	}
}

// publishPaced publishes the events at rate per second, each at its own
// scheduled time (start + i/rate), and returns when each was sent. A
// publisher that falls behind catches up without sleeping, so the achieved
// rate is reported as it was.
func (b *natsBroker) publishPaced(ctx context.Context, subject string, evs []event, rate float64) ([]time.Time, error) {
	js, err := jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	sent := make([]time.Time, len(evs))
	futures := make([]jetstream.PubAckFuture, len(evs))
	start := time.Now()
	for i, ev := range evs {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		sent[i] = time.Now()
		if futures[i], err = publishAsync(ctx, js, subject, ev.Body); err != nil {
			return nil, fmt.Errorf("publish event %d: %w", i+1, err)
		}
	}
	if err := awaitAcks(ctx, js, futures, time.Minute); err != nil {
		return nil, err
	}
	return sent, nil
}
