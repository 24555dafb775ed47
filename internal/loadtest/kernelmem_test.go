package loadtest

import (
	"os"
	"testing"
)

func TestKernelMemParse(t *testing.T) {
	meminfo := []byte(`MemTotal:       24684084 kB
MemFree:        18733804 kB
MemAvailable:   24140068 kB
Slab:            1036444 kB
SReclaimable:     966336 kB
SUnreclaim:        70108 kB
HugePages_Total:       0
`)
	sockstat := []byte(`sockets: used 4141
TCP: inuse 4131 orphan 0 tw 70 alloc 4131 mem 324
UDP: inuse 0 mem 0
`)
	var m kernelMem
	parseMeminfo(meminfo, &m)
	parseSockstat(sockstat, &m)
	want := kernelMem{MemAvailable: 24140068 << 10, Slab: 1036444 << 10, SUnreclaim: 70108 << 10, TCPMemPages: 324, TCPInUse: 4131}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
}

func TestKernelIdlePerConn(t *testing.T) {
	before := kernelMem{MemAvailable: 20 << 30, Slab: 1 << 30, SUnreclaim: 100 << 20, TCPMemPages: 100}
	after := kernelMem{MemAvailable: 20<<30 - 1000*20000, Slab: 1<<30 + 1000*8000, SUnreclaim: 100<<20 + 1000*7000, TCPMemPages: 100 + 250}
	k := kernelIdle(before, after, 1000)
	page := float64(os.Getpagesize())
	if k.SlabPerConn != 8000 || k.SUnreclaimPerConn != 7000 || k.UsedPerConn != 20000 || k.TCPMemPerConn != 250*page/1000 {
		t.Fatalf("got %+v", k)
	}
	if z := kernelIdle(before, after, 0); z.SlabPerConn != 0 {
		t.Fatalf("no connections: got %+v", z)
	}
}

func TestReadKernelMem(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo")
	}
	m := readKernelMem()
	if m.MemAvailable <= 0 || m.Slab <= 0 || m.SUnreclaim <= 0 || m.SUnreclaim > m.Slab {
		t.Fatalf("implausible: %+v", m)
	}
}
