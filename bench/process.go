package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/routertest"
)

// buildRouter builds the module's router binary into dir.
func buildRouter(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the router's module: run from the repository (or pass -router-bin)")
	}
	bin := filepath.Join(dir, "user-events-router")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build the router: %w\n%s", err, out)
	}
	return bin, nil
}

// routerProc is the router binary running as a child process.
type routerProc struct {
	cmd       *exec.Cmd
	Started   time.Time
	AdminAddr string
	LogPath   string
	exited    chan struct{}
	waitErr   error
}

// routerEnv is the child's environment: ours without any router variable
// (a stray NATS_URL in the shell must not redirect the router), then the
// run's settings, then -env.
func routerEnv(settings map[string]string, extra []string) []string {
	own := map[string]bool{}
	for _, v := range configs.Variables() {
		own[v.Name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !own[k] {
			env = append(env, kv)
		}
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return append(env, extra...)
}

// startRouter runs bin with env, its output going to logPath.
func startRouter(bin string, env []string, adminAddr, logPath string) (*routerProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Should the benchmark die without stopping it, the router is told to
	// shut down rather than left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start router: %w", err)
	}
	p := &routerProc{cmd: cmd, Started: time.Now(), AdminAddr: adminAddr, LogPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the router's process id.
func (p *routerProc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *routerProc) Exited() <-chan struct{} { return p.exited }

// exitError says how the router ended, with the end of its log.
func (p *routerProc) exitError() error {
	return fmt.Errorf("router exited early (%v); last log lines:\n%s", p.waitErr, tail(p.LogPath, 15))
}

// waitReady polls GET /readyz until it answers 200 and returns when.
func (p *routerProc) waitReady(ctx context.Context) (time.Time, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.AdminAddr+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-p.exited:
			return time.Time{}, p.exitError()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// scrape fetches the router's Prometheus metrics.
func (p *routerProc) scrape(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.AdminAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape metrics: status %d: %v", resp.StatusCode, err)
	}
	return string(body), nil
}

// peakRSS is the process's resident-set high-water mark (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	st, err := memoryStatus(pid)
	return int64(st.VmHWM), err
}

// currentRSS is the process's resident set (VmRSS), in bytes.
func currentRSS(pid int) (int64, error) {
	st, err := memoryStatus(pid)
	return int64(st.VmRSS), err
}

// memoryStatus reads /proc/<pid>/status. A process without memory figures
// there (one that has exited but not been reaped) is an error, not 0 bytes.
func memoryStatus(pid int) (procfs.ProcStatus, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStatus{}, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return procfs.ProcStatus{}, err
	}
	if st.VmHWM == 0 {
		return procfs.ProcStatus{}, fmt.Errorf("no memory figures in /proc/%d/status", pid)
	}
	return st, nil
}

// Stop asks the router to shut down (SIGTERM) and kills it if it has not
// ended within its close timeout plus a margin.
func (p *routerProc) Stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("router did not stop within 45s of SIGTERM; killed")
	}
}

// freeAddr is a loopback address for the router to listen on, from
// routertest.FreePort: never one handed out before, by this process or
// another test process beside it, and not one the kernel hands out to an
// outgoing connection before the router binds it.
func freeAddr() (string, error) {
	port, err := routertest.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// perfRecorder records a CPU profile of one process with perf(1).
type perfRecorder struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startPerf(pid int, out string) (*perfRecorder, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, errors.New("-perf: perf(1) is not installed")
	}
	r := &perfRecorder{}
	r.cmd = exec.Command("perf", "record", "-F", "499", "-g", "-o", out, "-p", strconv.Itoa(pid))
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, &r.stderr
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("-perf: %w", err)
	}
	return r, nil
}

// Stop ends the recording (SIGINT, as perf expects) and waits for perf to
// write its file.
func (r *perfRecorder) Stop() error {
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && r.cmd.ProcessState.ExitCode() > 0 {
			return fmt.Errorf("perf record: %v: %s", err, firstLines(r.stderr.String(), 3))
		}
		return nil
	case <-time.After(60 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
		return errors.New("perf record did not stop; killed")
	}
}

func firstLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var out []string
	for sc.Scan() && len(out) < n {
		out = append(out, sc.Text())
	}
	return strings.Join(out, " | ")
}
