package routertest

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// handedOut holds the ports FreePort has returned in this process.
var handedOut sync.Map // int → struct{}

// FreePort is a loopback TCP port that is free right now, that no earlier
// call in this process returned, and that the kernel does not hand out on
// its own.
//
// Asking the kernel for any port (":0") and closing the listener is not
// enough: Linux gives the port just closed to the next request for any
// port, so two addresses asked for one after the other (a router's
// HTTP_ADDR and ADMIN_ADDR) were sometimes the same, and the router failed
// on "address already in use"; any other listener on ":0", or a
// connection's own end, could take it too before the caller binds it.
// Where the kernel says which range it draws from
// (/proc/sys/net/ipv4/ip_local_port_range), the port is drawn at random
// below that range, where only a listener that names it can take it.
// Test processes running side by side never hand out the same port
// either: each holds a lock on its ports in a file they share
// (claimAcross).
func FreePort() (int, error) {
	lo, hi := belowEphemeral()
	for range 1000 {
		port, err := candidate(lo, hi)
		if err != nil {
			return 0, err
		}
		if port == 0 {
			continue // taken
		}
		if _, taken := handedOut.LoadOrStore(port, struct{}{}); !taken && claimAcross(port) {
			return port, nil
		}
	}
	return 0, errors.New("routertest: no free port that was not handed out already")
}

// candidate binds a random port in [lo, hi), or any port when hi is 0, and
// returns it, or 0 when that one is in use.
func candidate(lo, hi int) (int, error) {
	addr := "127.0.0.1:0"
	if hi > lo {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if hi > lo {
			return 0, nil
		}
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// belowEphemeral is the range FreePort draws from: from 20000 (above the
// usual fixed ports of local services) to the start of the kernel's
// ephemeral range; 0, 0 where that range is unknown.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	first, err := strconv.Atoi(f[0])
	if err != nil || first-20000 < 1000 {
		return 0, 0
	}
	return 20000, first
}

// FreeAddr is 127.0.0.1 with a FreePort, for a process under test to
// listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
