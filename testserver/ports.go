package testserver

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePortPair finds a loopback port p with p+1 free as well: a server also
// binds its cluster listener to the next port. The pair is drawn below the
// kernel's ephemeral range: a port the kernel hands out (":0") goes back to
// that range when its listener closes, and a node killed and restarted on
// it finds it taken by some outgoing connection's source port (seen as
// "bind: address already in use" on a restarted Raft node's cluster port).
func FreePortPair() (int, error) {
	low := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(low-10000-1)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("no free pair of loopback ports found below the ephemeral range")
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default, 32768, where the range cannot be read).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallback
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return fallback
	}
	return n
}
