package handlers

import (
	"errors"
	"time"

	"github.com/social/user-events-router/schema"
)

// ErrPermanent is matched by every failure that no retry can fix: the input
// itself is wrong. Such messages go to the poison queue at once.
var ErrPermanent = errors.New("permanent failure")

// PermanentError marks err as permanent while keeping it inspectable.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string        { return e.Err.Error() }
func (e *PermanentError) Unwrap() error        { return e.Err }
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent wraps err as a permanent failure (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether retrying err is pointless: an invalid event or
// an error marked with Permanent. Everything else is treated as transient.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, schema.ErrInvalidEvent)
}

// HoldError asks the transport to hand the message back and deliver it
// again later (with its usual redelivery delay): the ledger cannot decide
// it yet (see VerdictHold). It is neither permanent nor a failure: no
// in-process retry, no poison entry.
type HoldError struct {
	// Delay, when set, replaces the transport's usual redelivery delay.
	Delay time.Duration
	Why   string
}

func (e *HoldError) Error() string { return "held back: " + e.Why }

// IsHold reports whether err asks for the message to be held back.
func IsHold(err error) bool {
	if err == nil {
		// errors.As takes the target's address, which moves it to the
		// heap: an allocation per call, on every event, for nothing.
		return false
	}
	var h *HoldError
	return errors.As(err, &h)
}

// HoldDelay is the delay err's hold asks for (0: the usual one).
func HoldDelay(err error) time.Duration {
	if err == nil {
		return 0
	}
	var h *HoldError
	if errors.As(err, &h) {
		return h.Delay
	}
	return 0
}
