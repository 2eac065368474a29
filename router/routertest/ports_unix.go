//go:build unix

package routertest

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// portLocks is the file whose bytes stand for ports: a test process that
// hands out port N holds a write lock on byte N, until it exits (the
// kernel drops a process's locks then, however it ends). The file is
// opened once and never closed, since closing any descriptor of it would
// drop all of this process's locks.
var portLocks = sync.OnceValue(func() *os.File {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "user-events-router-test-ports.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil // no claims across processes; the record within one still holds
	}
	return f
})

// claimAcross takes port for this process among all the test processes
// of this machine that share the temporary directory, and reports whether
// it could: false when another one holds it. Two test binaries (go test
// runs packages side by side) drawing the same port before either binds
// it would otherwise both hand it out.
func claimAcross(port int) bool {
	f := portLocks()
	if f == nil {
		return true
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
	err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return false
	}
	return true // locked, or locks do not work here: as without the file
}
