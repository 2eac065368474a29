package routertest

import "testing"

// Ports asked for one after the other are never the same: without the
// record of ports handed out, 2,000 draws from the kernel's ephemeral range
// repeat some (about 70 pairs expected).
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
