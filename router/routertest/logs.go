package routertest

import (
	"bytes"
	"strings"
	"sync"
)

// LockedBuffer collects log lines written from several goroutines (a
// server's, a subscriber's, the test's), for tests that read them back.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is how many JSON log lines so far have the message msg.
func (l *LockedBuffer) Count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), `"msg":"`+msg+`"`)
}
