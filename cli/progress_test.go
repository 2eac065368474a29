package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestPublishProgress: a long run says how far it is, at most once per
// interval, never for the last event (the summary does) or a short run.
func TestPublishProgress(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var out strings.Builder
	p := newProgress(&out, 10, time.Second, clock, publishLine)
	for n := 1; n <= 10; n++ {
		now = now.Add(400 * time.Millisecond) // 2.5 events a second
		p.update(n)
	}
	want := "publish: 3 of 10 events sent (2/s)\npublish: 6 of 10 events sent (2/s)\npublish: 9 of 10 events sent (2/s)\n"
	if out.String() != want {
		t.Errorf("progress:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	p = newProgress(&out, 1000, time.Second, clock, publishLine)
	for n := 1; n <= 999; n++ {
		p.update(n) // all within the same instant
	}
	if out.String() != "" {
		t.Errorf("a run shorter than the interval reported: %q", out.String())
	}
}

func TestPoisonProgress(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	p := newProgress(&buf, 3000, time.Second, func() time.Time { return now }, poisonLine("delete"))
	for done := 1000; done <= 3000; done += 1000 {
		now = now.Add(700 * time.Millisecond)
		p.update(done)
	}
	p.done(3000)
	want := "poison delete: 2000 of 3000 entries (1s)\npoison delete: 3000 of 3000 entries, done in 2.1s\n"
	if buf.String() != want {
		t.Errorf("progress =\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	quick := newProgress(&buf, 10, time.Second, time.Now, poisonLine("delete"))
	quick.update(10)
	quick.done(10)
	if buf.Len() != 0 {
		t.Errorf("a quick run prints progress: %q", buf.String())
	}
}
