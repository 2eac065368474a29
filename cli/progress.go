package cli

import (
	"fmt"
	"io"
	"time"
)

// progress reports a long run on stderr — publish's events, a bulk poison
// replay or delete — as a count line at most once per interval, never one
// line per item, and none for a run shorter than one interval.
type progress struct {
	w           io.Writer
	total       int
	every       time.Duration
	now         func() time.Time
	start, last time.Time
	announced   bool
	describe    progressFormat
}

// progressFormat writes one progress line, or the closing one (last).
type progressFormat func(done, total int, elapsed time.Duration, last bool) string

func newProgress(w io.Writer, total int, every time.Duration, now func() time.Time, describe progressFormat) *progress {
	t := now()
	return &progress{w: w, total: total, every: every, now: now, start: t, last: t, describe: describe}
}

// update notes that done items are finished; the last one is left to done.
func (p *progress) update(done int) {
	if done >= p.total {
		return
	}
	t := p.now()
	if t.Sub(p.last) < p.every {
		return
	}
	p.last, p.announced = t, true
	fmt.Fprintln(p.w, p.describe(done, p.total, t.Sub(p.start), false))
}

// done closes a run that printed progress with a last line, if the format
// has one.
func (p *progress) done(done int) {
	if !p.announced {
		return
	}
	if line := p.describe(done, p.total, p.now().Sub(p.start), true); line != "" {
		fmt.Fprintln(p.w, line)
	}
}

// publishLine: publish's summary says the end, so no closing line.
func publishLine(done, total int, elapsed time.Duration, last bool) string {
	if last {
		return ""
	}
	return fmt.Sprintf("publish: %d of %d events sent (%.0f/s)", done, total, float64(done)/elapsed.Seconds())
}

// poisonLine is the progress of a bulk poison operation (verb: replay or
// delete).
func poisonLine(verb string) progressFormat {
	return func(done, total int, elapsed time.Duration, last bool) string {
		if last {
			return fmt.Sprintf("poison %s: %d of %d entries, done in %s", verb, done, total, elapsed.Round(100*time.Millisecond))
		}
		return fmt.Sprintf("poison %s: %d of %d entries (%s)", verb, done, total, elapsed.Round(time.Second))
	}
}
