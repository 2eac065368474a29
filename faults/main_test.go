package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// routerBinary is the router built once for the whole package; "" under
// -short, when every test skips.
var routerBinary string

// TestMain builds the module root into a temporary directory, so every test
// runs the binary operators run, not the code in-process.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	setParallel()
	dir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	bin, err := buildRouter(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	routerBinary = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildRouter runs `go build` on the module root. FAULTS_ROUTER_RACE=1
// builds the binary with the race detector (slower; off by default).
func buildRouter(dir string) (string, error) {
	bin := filepath.Join(dir, "user-events-router")
	args := []string{"build", "-o", bin}
	if os.Getenv("FAULTS_ROUTER_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	fmt.Fprintf(os.Stderr, "faults: built %s in %v (race=%v)\n", bin, time.Since(start).Round(time.Millisecond), os.Getenv("FAULTS_ROUTER_RACE") == "1")
	return bin, nil
}

// setParallel raises -parallel (default GOMAXPROCS) to 4 unless it was
// given: a scenario spends most of its time waiting (for an ack wait to
// expire, for a process to start), not computing, so running several at
// once shortens the suite without starving it. FAULTS_PARALLEL overrides.
func setParallel() {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given {
		return
	}
	n := "4"
	if v := os.Getenv("FAULTS_PARALLEL"); v != "" {
		n = v
	}
	if err := flag.Set("test.parallel", n); err != nil {
		fmt.Fprintln(os.Stderr, "faults: FAULTS_PARALLEL:", err)
		os.Exit(2)
	}
}
