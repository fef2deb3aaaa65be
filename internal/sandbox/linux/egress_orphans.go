//go:build linux

package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// A Kiln that dies without closing its egress (SIGKILL, a crash) leaves its
// bridge, veths, nftables table and firewall openings behind; a Kiln
// started on the same data dir replaces them (removeStale), but one never
// started again would leave them for good, each holding a subnet later
// servers may want. So each bridge carries its owner in its alias, and a
// starting egress removes the bridges whose owner is gone.

const aliasPrefix = "kiln-egress "

// ownerAlias names this process: its pid namespace, pid and start time,
// so a reused pid is not mistaken for the owner.
func ownerAlias() string {
	return fmt.Sprintf("%spidns=%s pid=%d start=%s", aliasPrefix, pidNS(), os.Getpid(), procStart(os.Getpid()))
}

// pidNS names this process's pid namespace ("pid:[4026531836]").
func pidNS() string {
	s, _ := os.Readlink("/proc/self/ns/pid")
	return s
}

// procStart is field 22 of /proc/<pid>/stat (start time in clock ticks
// since boot), "" if the process is gone.
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces; fields after it do not.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// ownerGone reports whether alias names a process that no longer runs.
func ownerGone(alias string) bool {
	rest, ok := strings.CutPrefix(alias, aliasPrefix)
	if !ok {
		return false
	}
	var pid int
	var start, ns string
	for _, kv := range strings.Fields(rest) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "pid":
			pid, _ = strconv.Atoi(v)
		case "start":
			start = v
		case "pidns":
			ns = v
		}
	}
	// A Kiln in another pid namespace (a container sharing the host's
	// network) is invisible here, not gone: never take its bridge.
	if pid <= 0 || ns != pidNS() {
		return false
	}
	return procStart(pid) != start
}

// reapOrphans removes, in the calling thread's network namespace, every
// Kiln egress whose owning process is gone.
func (e *egress) reapOrphans() {
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "bridge" || a.Name == e.bridge || !ownerGone(a.Alias) {
			continue
		}
		e.log.Warn("sandbox egress: removing the bridge, rules and firewall openings of a Kiln that is gone",
			"bridge", a.Name, "owner", strings.TrimPrefix(a.Alias, aliasPrefix))
		o := &egress{log: e.log, bridge: a.Name, prefix: vethPrefix(a.Name)}
		o.removeStale()
	}
}
