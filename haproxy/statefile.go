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
// line, the header and the rows of the slots in keep ("pool/index", 0-based
// as in Layout): the state file of a reload that must carry those slots'
// admin state (a drain) over to the new worker. Every other server starts
// as the config says. Rows are matched by column name, never position.
func StateFile(showServersState string, keep map[string]bool) []byte {
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
		be, bok := cols["be_name"]
		srv, sok := cols["srv_name"]
		f := strings.Fields(line)
		if !bok || !sok || len(f) <= max(be, srv) {
			continue
		}
		i, ok := SlotIndex(f[srv])
		if ok && keep[f[be]+"/"+strconv.Itoa(i)] {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}
