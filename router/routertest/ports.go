package routertest

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut holds the ports FreePort has returned in this process.
var handedOut sync.Map // int → struct{}

// FreePort is a loopback TCP port that is free right now and that no
// earlier call in this process returned. The kernel may hand the port of a
// listener just closed to the next request for any port, so two addresses
// asked for one after the other (a router's HTTP_ADDR and ADMIN_ADDR) were
// sometimes the same, and the router then failed to start on "address
// already in use". Another process can still take the port before the
// caller binds it; that is rare, and not this process's doing.
func FreePort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, err
		}
		if _, taken := handedOut.LoadOrStore(port, struct{}{}); !taken {
			return port, nil
		}
	}
	return 0, errors.New("routertest: no free port that was not handed out already")
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
