package consume

import (
	"testing"
	"time"
)

// SetTakeoverReadLimit bounds a takeover's read in the NATS callback by d
// until t ends. Only for tests that do not run in parallel with others.
func SetTakeoverReadLimit(t testing.TB, d time.Duration) {
	takeoverReadLimit.Store(int64(d))
	t.Cleanup(func() { takeoverReadLimit.Store(0) })
}
