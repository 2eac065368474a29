package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamSubjects are the subjects of the Auth Service's stream.
var StreamSubjects = []string{"user.events.*"}

// AuthServiceStreamConfig is exactly the stream the Auth Service creates. A
// stream with any other settings makes the Auth Service give up on NATS, so
// the router creates this one or nothing.
func AuthServiceStreamConfig(name string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   slices.Clone(StreamSubjects),
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 5 * time.Minute,
		Replicas:   1,
	}
}

// EnsureStream creates the stream with the Auth Service's settings when it
// does not exist, and never changes an existing one. It returns the
// stream's settings as found, and logs a warning if they differ from what
// the Auth Service expects (replicas aside).
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, logger *slog.Logger) (jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		want := AuthServiceStreamConfig(name)
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// The Auth Service created it between our look-up and create.
			s, err = js.Stream(ctx, name)
		} else if err == nil {
			logger.Info("created stream with the Auth Service's settings", "stream", name, "subjects", want.Subjects)
		}
	}
	if err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("stream %s: %w", name, err)
	}
	got := s.CachedInfo().Config
	if diff := streamDiff(AuthServiceStreamConfig(name), got); diff != "" {
		logger.Warn("stream settings differ from the Auth Service's; leaving them unchanged", "stream", name, "difference", diff)
	}
	return got, nil
}

func streamDiff(want, got jetstream.StreamConfig) string {
	switch {
	case !slices.Equal(want.Subjects, got.Subjects):
		return fmt.Sprintf("subjects %v, expected %v", got.Subjects, want.Subjects)
	case want.Retention != got.Retention:
		return fmt.Sprintf("retention %v, expected %v", got.Retention, want.Retention)
	case want.Storage != got.Storage:
		return fmt.Sprintf("storage %v, expected %v", got.Storage, want.Storage)
	case want.MaxAge != got.MaxAge:
		return fmt.Sprintf("max age %v, expected %v", got.MaxAge, want.MaxAge)
	case want.Duplicates != got.Duplicates:
		return fmt.Sprintf("duplicate window %v, expected %v", got.Duplicates, want.Duplicates)
	}
	// Replicas are left out: the Auth Service does not give up over them
	// (its UpdateStream scales the stream back to one), and more than one
	// is what a cluster should hold (see StreamRedundancy).
	return ""
}
