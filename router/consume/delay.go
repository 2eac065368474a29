package consume

import "time"

// Backoff is the redelivery delay after a message is handed back (NAK): it
// doubles per delivery from First up to Max. It never asks to terminate a
// message: on a WorkQueue stream that would drop it.
type Backoff struct {
	First, Max time.Duration
}

// WaitTime is the delay before the delivered-th redelivery.
func (b Backoff) WaitTime(delivered uint64) time.Duration {
	d := b.First
	for i := uint64(1); i < delivered && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
