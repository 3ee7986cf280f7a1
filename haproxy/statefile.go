package haproxy

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// ServerStateFile is where a reload finds the state of the servers it must
// carry over (global server-state-file; selector backends load it).
const ServerStateFile = "/var/lib/haproxy/incuslb-server-state"

// StateFile keeps, from the answer of `show servers state`, the version
// line, the header and the rows a reload must carry over to the new
// worker: the slots in draining ("pool/index", 0-based as in Layout), and
// every slot of layout that keeps its member at the same endpoint. So a
// draining member keeps draining, a member that is down stays down until
// its checks pass, and a member waiting for its first check keeps waiting.
// Every other server starts as the config says. Rows are matched by column
// name, never position.
func StateFile(showServersState string, layout Layout, draining map[string]bool) []byte {
	var out bytes.Buffer
	out.WriteString("1\n")
	cols := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(showServersState))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "# "); ok && len(cols) == 0 {
			for i, c := range strings.Fields(h) {
				cols[c] = i
			}
			out.WriteString(line + "\n")
			continue
		}
		f := strings.Fields(line)
		get := func(c string) string {
			if i, ok := cols[c]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		be, srv := get("be_name"), get("srv_name")
		i, ok := SlotIndex(srv)
		if be == "" || !ok {
			continue
		}
		if draining[be+"/"+strconv.Itoa(i)] || keepsEndpoint(layout[be], i, get("srv_addr"), get("srv_port")) {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

// keepsEndpoint reports whether slot i of a pool's layout holds a member
// at addr:port. A parked slot's row is never carried: the config writes it
// disabled, and HAProxy, given a row that says it was not in maintenance,
// takes it out of maintenance, which makes it UP (health = rise) at the
// parked address until its first check: requests would be sent there.
// The new worker keeps it in maintenance until incuslb rests it.
func keepsEndpoint(slots []Slot, i int, addr, port string) bool {
	if i >= len(slots) {
		return false
	}
	n, err := strconv.Atoi(port)
	want := slots[i]
	return err == nil && !want.Parked() && addr == want.Address && n == want.Port
}
