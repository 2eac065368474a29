package routertest

import (
	"net"
	"testing"
)

// Ports asked for one after the other are never the same: without the
// record of ports handed out, 2,000 random draws repeat some.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}

// Where the kernel says which ports it hands out to ":0" listeners and
// outgoing connections, FreePort's are below them, so that none of those
// can take a port between FreePort and the caller's bind: the port a
// listener on ":0" gets right after FreePort is never FreePort's.
func TestFreePortIsNotTheKernels(t *testing.T) {
	lo, hi := belowEphemeral()
	if hi == 0 {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range here: FreePort asks the kernel")
	}
	for range 200 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lo || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lo, hi)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if got == port {
			t.Fatalf("a listener on :0 got FreePort's port %d", port)
		}
	}
}
