//go:build unix

package routertest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Two test processes never hand out the same port: a port this one has
// handed out is refused to another process (go test runs packages side by
// side), and only while this one lives.
func TestFreePortNotTwiceAcrossProcesses(t *testing.T) {
	if ports := os.Getenv("ROUTERTEST_CLAIM"); ports != "" {
		// The other process: claim each port, print the ones it got.
		var got []string
		for _, p := range strings.Split(ports, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				t.Fatal(err)
			}
			if claimAcross(n) {
				got = append(got, p)
			}
		}
		fmt.Printf("claimed:%s:\n", strings.Join(got, ","))
		return
	}
	var mine []string
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, strconv.Itoa(port))
	}
	other := func(ports []string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFreePortNotTwiceAcrossProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ROUTERTEST_CLAIM="+strings.Join(ports, ","))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the other process: %v\n%s", err, out)
		}
		_, rest, ok := strings.Cut(string(out), "claimed:")
		got, _, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			t.Fatalf("the other process said:\n%s", out)
		}
		return got
	}
	if got := other(mine); got != "" {
		t.Fatalf("another process claimed ports this one handed out: %s", got)
	}
	// A port nobody holds is the other process's to take: the refusal
	// above is the lock, not a claim that always fails.
	// Another test process may claim the port first: try a few.
	var free []string
	for p := 20000; p < 30000 && len(free) < 5; p++ {
		if _, held := handedOut.Load(p); !held && !heldElsewhere(t, p) {
			free = append(free, strconv.Itoa(p))
		}
	}
	if got := other(free); got == "" {
		t.Fatalf("the other process could claim none of the ports %v that nobody here holds", free)
	}
}

// heldElsewhere reports whether another process holds port's lock.
func heldElsewhere(t *testing.T, port int) bool {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
	if err := syscall.FcntlFlock(portLocks().Fd(), syscall.F_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type != syscall.F_UNLCK
}
