package loadtest

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// kernelMem is the machine's memory as the kernel accounts it, sampled
// before the workers connect and after the sockets settled: an idle socket
// costs the kernel more than it costs the server (on loopback every
// connection is two TCP sockets, each with its file, inode and epoll
// entries, and a conntrack entry where conntrack is on), and none of that is
// in any process's RSS.
type kernelMem struct {
	MemAvailable int64 `json:"memAvailableBytes"` // /proc/meminfo MemAvailable
	Slab         int64 `json:"slabBytes"`         // Slab: all kernel slab caches
	SUnreclaim   int64 `json:"sunreclaimBytes"`   // SUnreclaim: the part that cannot be reclaimed
	TCPMemPages  int64 `json:"tcpMemPages"`       // /proc/net/sockstat TCP mem: pages charged to TCP buffers
	TCPInUse     int64 `json:"tcpInUse"`          // TCP inuse: sockets (this network namespace)
}

// KernelIdle is what the idle sockets cost the kernel: the samples, and
// their growth per connection (a connection is both its ends: on loopback,
// the worker's socket and the server's).
type KernelIdle struct {
	Before kernelMem `json:"before"`
	After  kernelMem `json:"after"`
	// Growth per connection, in bytes. UsedPerConn is the fall of
	// MemAvailable: everything the connections cost the machine (servers,
	// workers, Redis and kernel), less what page cache gave way.
	SlabPerConn       float64 `json:"slabPerConnBytes"`
	SUnreclaimPerConn float64 `json:"sunreclaimPerConnBytes"`
	TCPMemPerConn     float64 `json:"tcpMemPerConnBytes"`
	UsedPerConn       float64 `json:"usedPerConnBytes"`
}

func readKernelMem() kernelMem {
	m := readMeminfo()
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		parseSockstat(b, &m)
	}
	return m
}

// readMeminfo is kernelMem's /proc/meminfo part (zero where unreadable).
func readMeminfo() kernelMem {
	var m kernelMem
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		parseMeminfo(b, &m)
	}
	return m
}

// parseMeminfo reads the lines "Name:   N kB" that kernelMem keeps.
func parseMeminfo(b []byte, m *kernelMem) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 2 && string(f[2]) == "kB" {
			v <<= 10
		}
		switch string(f[0]) {
		case "MemAvailable:":
			m.MemAvailable = v
		case "Slab:":
			m.Slab = v
		case "SUnreclaim:":
			m.SUnreclaim = v
		}
	}
}

// parseSockstat reads the line "TCP: inuse N orphan N tw N alloc N mem N".
func parseSockstat(b []byte, m *kernelMem) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, err := strconv.ParseInt(string(f[i+1]), 10, 64)
			if err != nil {
				continue
			}
			switch string(f[i]) {
			case "inuse":
				m.TCPInUse = v
			case "mem":
				m.TCPMemPages = v
			}
		}
	}
}

// kernelIdle is the growth from before to after, per connection.
func kernelIdle(before, after kernelMem, conns int) *KernelIdle {
	k := &KernelIdle{Before: before, After: after}
	if conns <= 0 {
		return k
	}
	n := float64(conns)
	k.SlabPerConn = float64(after.Slab-before.Slab) / n
	k.SUnreclaimPerConn = float64(after.SUnreclaim-before.SUnreclaim) / n
	k.TCPMemPerConn = float64((after.TCPMemPages-before.TCPMemPages)*int64(os.Getpagesize())) / n
	k.UsedPerConn = float64(before.MemAvailable-after.MemAvailable) / n
	return k
}

// sampleWorkersIdle adds the workers' RSS to the idle figures.
func (c *coordinator) sampleWorkersIdle(idle *IdleResult) {
	var rss int64
	for _, w := range c.workers {
		if st, err := readProc(w.p.pid()); err == nil {
			rss += st.RSSBytes
		}
	}
	idle.WorkerRSSMiB = float64(rss) / (1 << 20)
	if idle.Open > 0 {
		idle.WorkerRSSPerConn = float64(rss) / float64(idle.Open)
	}
}
