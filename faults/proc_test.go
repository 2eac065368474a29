package faults

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
)

// Timing of the routers under test. The router's defaults (30 s ack wait,
// 1 s first NAK delay) are right for production and would make every fault
// cost half a minute here: the deliveries a killed process held come back
// only when the durable's ack wait expires. The ack wait must exceed the
// in-process retry budget, HANDLER_TIMEOUT × (RETRY_MAX+1) + backoff =
// 1 s × 2 + 30 ms. Max ack pending is cut from 1000 to 64, so that a killed
// router leaves few deliveries to wait out the ack wait, and none waits long
// behind the others of its process.
const (
	closeTimeout   = 10 * time.Second
	handlerTimeout = "1s"
	retryMax       = "1"
	ackWait        = "3s"
	maxAckPending  = "64"
	// readyTimeout bounds a start: open the database, bind the durable, serve.
	readyTimeout = 30 * time.Second
)

// routerProc is one router process.
type routerProc struct {
	name      string
	cmd       *exec.Cmd
	logPath   string
	httpAddr  string
	adminAddr string
	// exited is closed once Wait has returned; state is valid after that.
	exited chan struct{}
	state  *os.ProcessState
	werr   error
}

// procOptions picks what differs between the processes of one test.
type procOptions struct {
	// httpAddr reuses an ingress address (a restart on the same port); ""
	// picks a free one.
	httpAddr string
	// databaseURL overrides the fixture's (e.g. through a proxy).
	databaseURL string
	// embeddedListen, when set, runs the router on its embedded NATS
	// server (NATS_URL empty) listening there, with its store in dataDir.
	embeddedListen string
	// dataDir overrides the process's own DATA_DIR (to restart on the same
	// embedded store).
	dataDir string
	// apply runs `user-events-router apply` (the monolith's side) instead
	// of serve, with its health and metrics on the process's admin address.
	apply bool
	// env is added to the process's environment, after the suite's
	// settings, so an entry here overrides one of them (e.g.
	// NATS_CONSUMER=pinned).
	env []string
}

// startRouter starts `user-events-router` (serve, or apply) and waits until
// its /readyz answers 200. The process is killed and reaped when the test
// ends; if the test failed, the tail of its log is printed.
func (f *fixture) startRouter(t *testing.T, o procOptions) *routerProc {
	t.Helper()
	f.procs++
	kind, command := "router", "serve"
	if o.apply {
		kind, command = "apply", "apply"
	}
	p := &routerProc{
		name:      fmt.Sprintf("%s-%d", kind, f.procs),
		httpAddr:  o.httpAddr,
		adminAddr: freeAddr(t),
		exited:    make(chan struct{}),
	}
	if p.httpAddr == "" {
		p.httpAddr = freeAddr(t)
	}
	dbURL := f.dbURL
	if o.databaseURL != "" {
		dbURL = o.databaseURL
	}
	dataDir := filepath.Join(f.dir, p.name)
	if o.dataDir != "" {
		dataDir = o.dataDir
	}
	natsURL := f.natsURL
	if natsURL == "" {
		natsURL = f.broker.URL
	}
	natsEnv := "NATS_URL=" + natsURL
	if o.embeddedListen != "" {
		natsEnv = "NATS_LISTEN=" + o.embeddedListen
	}
	p.logPath = filepath.Join(f.dir, p.name+".log")
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor

	p.cmd = exec.Command(routerBinary, command)
	// A clean environment: nothing from the developer's shell (a NATS_CREDS,
	// a DATABASE_URL) leaks into the router under test.
	p.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		natsEnv,
		"DATABASE_URL=" + dbURL,
		"DATA_DIR=" + dataDir,
		"HTTP_ADDR=" + p.httpAddr,
		"ADMIN_ADDR=" + p.adminAddr,
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
		"NAK_DELAY=100ms",
		"NAK_DELAY_MAX=500ms",
		"RETRY_INITIAL_INTERVAL=20ms",
		"HANDLER_TIMEOUT=" + handlerTimeout,
		"RETRY_MAX=" + retryMax,
		"NATS_ACK_WAIT=" + ackWait,
		"NATS_MAX_ACK_PENDING=" + maxAckPending,
		"CLOSE_TIMEOUT=" + closeTimeout.String(),
	}
	if o.apply {
		p.cmd.Env = append(p.cmd.Env, "APPLY_ADMIN_ADDR="+p.adminAddr)
	}
	p.cmd.Env = append(p.cmd.Env, o.env...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.werr = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill(t)
		// A router built with FAULTS_ROUTER_RACE=1 reports data races here.
		if b, err := os.ReadFile(p.logPath); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s: the race detector reported a data race; see %s", p.name, p.logPath)
		}
		if t.Failed() {
			t.Logf("%s (%s) log tail:\n%s", p.name, p.logPath, tail(p.logPath, 40))
		}
	})
	p.waitReady(t)
	return p
}

// waitReady polls GET /readyz until it answers 200.
func (p *routerProc) waitReady(t *testing.T) {
	t.Helper()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 2 * time.Second, Transport: transport}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before it was ready (%v); log tail:\n%s", p.name, p.werr, tail(p.logPath, 40))
		default:
		}
		resp, err := client.Get("http://" + p.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v (last: %v); log tail:\n%s", p.name, readyTimeout, describe(resp, err), tail(p.logPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describe(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// kill sends SIGKILL (a crash: no shutdown code runs) and reaps the process.
// It is a no-op for a process that already exited.
func (p *routerProc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10s after SIGKILL", p.name)
	}
}

// terminate sends SIGTERM and waits up to within for the exit; it returns
// the exit code (-1 when killed by a signal) and how long the exit took.
func (p *routerProc) terminate(t *testing.T, within time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
		return p.state.ExitCode(), time.Since(start)
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v of SIGTERM; log tail:\n%s", p.name, within, tail(p.logPath, 40))
		return 0, 0
	}
}

// running reports whether the process has not exited yet.
func (p *routerProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// log returns the process's whole log so far.
func (p *routerProc) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// countLines counts the lines of log that contain every one of substrs.
func countLines(log string, substrs ...string) int {
	n := 0
	for line := range strings.Lines(log) {
		all := true
		for _, s := range substrs {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}

// freeAddr is a loopback address whose port is free right now and was not
// handed out before in this process (routertest.FreeAddr).
func freeAddr(t *testing.T) string { return routertest.FreeAddr(t) }
