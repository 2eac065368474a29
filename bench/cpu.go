package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is the CPU time used so far by the processes of a run and by
// the whole machine, read from /proc.
type cpuSample struct {
	At time.Time
	// Router is the router process; Bench is this process (the in-process
	// NATS server, the pipeline of -baseline, and the polling); DB is every
	// PostgreSQL or MariaDB server process with its ended children, whoever
	// their clients are.
	Router, Bench, DB float64 // seconds
	// Machine CPU time by state, summed over every core, in seconds.
	Busy, IOWait, Idle float64
}

// dbProcessNames are the comm names of database server processes.
var dbProcessNames = map[string]bool{"postgres": true, "mariadbd": true, "mysqld": true}

func sampleCPU(routerPid int) cpuSample {
	s := cpuSample{At: time.Now()}
	if routerPid > 0 {
		if st, ok := readStat(fmt.Sprintf("/proc/%d/stat", routerPid)); ok {
			s.Router = st.self
		}
	}
	if st, ok := readStat("/proc/self/stat"); ok {
		s.Bench = st.self
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		if st, ok := readStat(path); ok && dbProcessNames[st.comm] {
			s.DB += st.self + st.children
		}
	}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
		v := func(i int) float64 {
			if i >= len(f) {
				return 0
			}
			n, _ := strconv.ParseFloat(f[i], 64)
			return n / clockTicks
		}
		s.Idle, s.IOWait = v(4), v(5)
		s.Busy = v(1) + v(2) + v(3) + v(6) + v(7) + v(8)
	}
	return s
}

type procStat struct {
	comm           string
	self, children float64 // utime+stime, cutime+cstime, seconds
}

func readStat(path string) (procStat, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, false
	}
	text := string(data)
	open, end := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(text[end+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, false
	}
	n := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v / clockTicks }
	return procStat{comm: text[open+1 : end], self: n(11) + n(12), children: n(13) + n(14)}, true
}

// CPUUse is where the machine's time went between two samples.
type CPUUse struct {
	Seconds float64 `json:"seconds"`
	// Per process: CPU seconds and the share of one core they amount to.
	RouterCPU  float64 `json:"router_cpu_s"`
	RouterCore float64 `json:"router_cores"`
	BenchCPU   float64 `json:"bench_and_nats_cpu_s"`
	BenchCore  float64 `json:"bench_and_nats_cores"`
	DBCPU      float64 `json:"db_server_cpu_s"`
	DBCore     float64 `json:"db_server_cores"`
	// OtherCores is busy time not accounted to the processes above: other
	// work on the machine (other tests, builds), the kernel's own threads.
	OtherCores float64 `json:"other_cores"`
	// Machine-wide shares of all cores' time.
	Cores     int     `json:"cores"`
	BusyPct   float64 `json:"machine_busy_pct"`
	IOWaitPct float64 `json:"machine_iowait_pct"`
	IdlePct   float64 `json:"machine_idle_pct"`
}

func cpuBetween(a, b cpuSample) CPUUse {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 {
		return CPUUse{}
	}
	u := CPUUse{
		Seconds:   wall,
		RouterCPU: b.Router - a.Router, BenchCPU: b.Bench - a.Bench, DBCPU: b.DB - a.DB,
		Cores: runtime.NumCPU(),
	}
	u.RouterCore, u.BenchCore, u.DBCore = u.RouterCPU/wall, u.BenchCPU/wall, u.DBCPU/wall
	if total := (b.Busy - a.Busy) + (b.IOWait - a.IOWait) + (b.Idle - a.Idle); total > 0 {
		u.BusyPct = 100 * (b.Busy - a.Busy) / total
		u.IOWaitPct = 100 * (b.IOWait - a.IOWait) / total
		u.IdlePct = 100 * (b.Idle - a.Idle) / total
		busyCores := (b.Busy - a.Busy) / wall
		u.OtherCores = max(0, busyCores-u.RouterCore-u.BenchCore-u.DBCore)
	}
	return u
}

// loadAverage is the 1-minute load average, a hint of how busy the machine
// was when the run started.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
