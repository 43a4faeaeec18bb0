package dashboard

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// procSampler reads this process's CPU use between two samples and its
// resident memory, from the kernel (getrusage, /proc/self/statm).
type procSampler struct {
	lastAt  time.Time
	lastCPU time.Duration
}

// sample returns the CPU used since the previous sample in percent of one
// core, and the resident set size in bytes (0 when unreadable).
func (p *procSampler) sample(now time.Time) (cpuPct float64, rss int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if !p.lastAt.IsZero() {
			if wall := now.Sub(p.lastAt); wall > 0 {
				cpuPct = 100 * float64(cpu-p.lastCPU) / float64(wall)
			}
		}
		p.lastAt, p.lastCPU = now, cpu
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		// size resident shared ...: pages.
		if f := bytes.Fields(b); len(f) > 1 {
			if pages, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil {
				rss = pages * int64(os.Getpagesize())
			}
		}
	}
	return cpuPct, rss
}
