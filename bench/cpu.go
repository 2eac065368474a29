package main

import (
	"runtime"
	"time"

	"github.com/prometheus/procfs"
)

// clockTicks is USER_HZ, the unit of the tick counts in /proc/<pid>/stat
// (100 on Linux, as procfs's ProcStat.CPUTime assumes too). Only the times
// of a process's ended children are read as ticks here: procfs gives no
// seconds for them.
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

// sampleCPU reads the CPU times; one it cannot read (a process that has
// just ended, say) stays 0.
func sampleCPU(routerPid int) cpuSample {
	s := cpuSample{At: time.Now()}
	if routerPid > 0 {
		if p, err := procfs.NewProc(routerPid); err == nil {
			if st, err := p.Stat(); err == nil {
				s.Router = st.CPUTime()
			}
		}
	}
	if p, err := procfs.Self(); err == nil {
		if st, err := p.Stat(); err == nil {
			s.Bench = st.CPUTime()
		}
	}
	if procs, err := procfs.AllProcs(); err == nil {
		for _, p := range procs {
			if st, err := p.Stat(); err == nil && dbProcessNames[st.Comm] {
				s.DB += st.CPUTime() + float64(st.CUTime+st.CSTime)/clockTicks
			}
		}
	}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if st, err := fs.Stat(); err == nil {
			c := st.CPUTotal
			s.Idle, s.IOWait = c.Idle, c.Iowait
			// Guest time is counted in user time already.
			s.Busy = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
		}
	}
	return s
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
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return 0
	}
	return l.Load1
}
