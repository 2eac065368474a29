package cli

import "testing"

func TestProbeURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":8081":          "http://127.0.0.1:8081/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"[::]:8081":      "http://[::1]:8081/readyz",
		"127.0.0.1:8081": "http://127.0.0.1:8081/readyz",
		"[::1]:8081":     "http://[::1]:8081/readyz",
		"localhost:8081": "http://localhost:8081/readyz",
		"10.1.2.3:8081":  "http://10.1.2.3:8081/readyz",
	} {
		if got, err := probeURL(addr, "/readyz"); err != nil || got != want {
			t.Errorf("probeURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"8081", "127.0.0.1:0", "127.0.0.1:"} {
		if got, err := probeURL(addr, "/readyz"); err == nil {
			t.Errorf("probeURL(%q) = %q, want an error", addr, got)
		}
	}
}
