package haproxy

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parsers of runtime API answers. They are pure functions: they read at
// most MaxAnswer bytes of an answer (the rest is ignored) and never panic,
// whatever they are given. The answers they read are captured from real
// HAProxy 2.6 and 3.0 under testdata/runtime/.

// MaxAnswer is how much of an answer is read from HAProxy, and how much of
// one a parser reads.
const MaxAnswer = 4 << 20

// capped returns at most MaxAnswer bytes of out, cut after a whole line:
// the line that straddles the cap is dropped rather than read truncated.
func capped(out string) string {
	if len(out) > MaxAnswer {
		out = out[:MaxAnswer]
		if i := strings.LastIndexByte(out, '\n'); i >= 0 {
			out = out[:i+1]
		}
	}
	return out
}

// lines splits an answer into lines without their line ends.
func lines(out string) []string {
	ls := strings.Split(capped(out), "\n")
	for i, l := range ls {
		ls[i] = strings.TrimSuffix(l, "\r")
	}
	return ls
}

// ParseShowEnv parses the answer of `show env [NAME]`: one NAME=value line
// per variable. Any other answer is HAProxy's error ("Variable not found"
// for a variable that is not set), returned in the error's text.
func ParseShowEnv(out string) (map[string]string, error) {
	env := map[string]string{}
	for _, l := range lines(out) {
		if l == "" {
			continue
		}
		name, value, ok := strings.Cut(l, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("show env: %s", strings.TrimSpace(firstLine(capped(out))))
		}
		env[name] = value
	}
	if len(env) == 0 {
		return nil, fmt.Errorf("show env: empty answer")
	}
	return env, nil
}

// CertInfo is what `show ssl cert PATH` says of a loaded certificate.
type CertInfo struct {
	Filename string
	Serial   string
	NotAfter string // as HAProxy prints it, e.g. "Nov 24 05:26:23 2027 GMT"
	Subject  string // e.g. "/CN=example.com"
	// SHA1 is the SHA-1 of the leaf certificate's DER, upper-case hex
	// without colons, from the "SHA1 FingerPrint:" line.
	SHA1 string
}

// ParseCertInfo parses the answer of `show ssl cert PATH`. It reads the
// first occurrence of each label: the leaf's, not a chain's. An answer
// without a "Filename:" line is HAProxy's error (certificate not loaded
// under that name), returned in the error's text.
func ParseCertInfo(out string) (CertInfo, error) {
	var c CertInfo
	seen := map[string]bool{}
	for _, l := range lines(out) {
		label, value, ok := strings.Cut(l, ":")
		if !ok || seen[label] {
			continue
		}
		seen[label] = true
		value = strings.TrimSpace(value)
		switch label {
		case "Filename":
			c.Filename = value
		case "Serial":
			c.Serial = value
		case "notAfter":
			c.NotAfter = value
		case "Subject":
			c.Subject = value
		case "SHA1 FingerPrint":
			c.SHA1 = strings.ToUpper(strings.ReplaceAll(value, ":", ""))
		}
	}
	if !seen["Filename"] {
		return CertInfo{}, fmt.Errorf("show ssl cert: %q", firstLine(capped(out)))
	}
	return c, nil
}

// StatRow is one row of `show stat`: a frontend, backend or server.
type StatRow struct {
	Proxy    string // pxname
	Server   string // svname (FRONTEND, BACKEND or the server's name)
	Sessions int    // scur
	Status   string // UP, DOWN, MAINT, DRAIN, "no check", ...
}

// ParseStat parses the CSV answer of `show stat`: a "# pxname,svname,..."
// header, then one row per proxy or server. Columns are found by name (their
// number and order change between versions: 129 in 2.6, 206 in 3.0). Rows
// with too few fields are skipped.
func ParseStat(out string) ([]StatRow, error) {
	var (
		rows []StatRow
		cols map[string]int
	)
	need := []string{"pxname", "svname", "scur", "status"}
	for _, l := range lines(out) {
		if h, ok := strings.CutPrefix(l, "# "); ok {
			cols = map[string]int{}
			for i, c := range strings.Split(h, ",") {
				if _, dup := cols[c]; !dup {
					cols[c] = i
				}
			}
			for _, c := range need {
				if _, ok := cols[c]; !ok {
					return nil, fmt.Errorf("show stat: no column %q in the header", c)
				}
			}
			continue
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if cols == nil {
			return nil, fmt.Errorf("show stat: unexpected answer %q", firstLine(capped(out)))
		}
		f := strings.Split(l, ",")
		if len(f) <= cols["pxname"] || len(f) <= cols["svname"] || len(f) <= cols["scur"] || len(f) <= cols["status"] {
			continue
		}
		n := 0
		if s := f[cols["scur"]]; s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				continue
			}
		}
		rows = append(rows, StatRow{
			Proxy:    f[cols["pxname"]],
			Server:   f[cols["svname"]],
			Sessions: n,
			Status:   f[cols["status"]],
		})
	}
	if cols == nil {
		return nil, fmt.Errorf("show stat: unexpected answer %q", firstLine(capped(out)))
	}
	return rows, nil
}

// ParseReloadAnswer reads the master CLI's answer to `reload`. HAProxy 2.8
// and later answer once the reload is over: "Success=1" or "Success=0", a
// "--" line, then the new process's startup logs, returned as logs. 2.6
// answers nothing: known is false and the outcome must be read from
// `show proc`. Any other answer is not known either; logs is then the
// answer itself, for the operator.
func ParseReloadAnswer(out string) (ok bool, known bool, logs string) {
	ls := lines(out)
	first := -1
	for i, l := range ls {
		if strings.TrimSpace(l) != "" {
			first = i
			break
		}
	}
	if first < 0 {
		return false, false, ""
	}
	switch strings.TrimSpace(ls[first]) {
	case "Success=1":
		ok = true
	case "Success=0":
		ok = false
	default:
		return false, false, strings.TrimSpace(capped(out))
	}
	rest := ls[first+1:]
	for i, l := range rest {
		if strings.TrimSpace(l) == "--" {
			return ok, true, strings.TrimSpace(strings.Join(rest[i+1:], "\n"))
		}
	}
	return ok, true, strings.TrimSpace(strings.Join(rest, "\n"))
}

// ParseServersState parses the answer of `show servers state`: a version
// line, a "# " header naming the columns, then one row per server.
func ParseServersState(out string) ([]ServerState, error) {
	var cols map[string]int
	var states []ServerState
	sc := bufio.NewScanner(strings.NewReader(capped(out)))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line == "1":
			continue
		case strings.HasPrefix(line, "# "):
			cols = map[string]int{}
			for i, c := range strings.Fields(line[2:]) {
				cols[c] = i
			}
			continue
		case cols == nil:
			return nil, fmt.Errorf("show servers state: unexpected answer %q", firstLine(out))
		}
		f := strings.Fields(line)
		get := func(c string) string {
			if i, ok := cols[c]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		atoi := func(c string) int { n, _ := strconv.Atoi(get(c)); return n }
		weight, werr := strconv.Atoi(get("srv_uweight"))
		states = append(states, ServerState{
			Weight:      weight,
			HasWeight:   werr == nil && weight >= 0 && weight <= 256,
			Backend:     get("be_name"),
			Name:        get("srv_name"),
			Address:     get("srv_addr"),
			Port:        atoi("srv_port"),
			OpState:     atoi("srv_op_state"),
			AdminState:  atoi("srv_admin_state"),
			CheckStatus: atoi("srv_check_status"),
			CheckHealth: atoi("srv_check_health"),
			Since:       time.Duration(atoi("srv_time_since_last_change")) * time.Second,
		})
	}
	if cols == nil {
		return nil, fmt.Errorf("show servers state: unexpected answer %q", firstLine(out))
	}
	return states, nil
}

// ParseShowProc parses the answer of the master CLI's `show proc`.
func ParseShowProc(out string) (Processes, error) {
	var p Processes
	section := "master"
	seen := false
	for _, line := range lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# workers"):
			section = "workers"
			continue
		case strings.HasPrefix(line, "# old workers"):
			section = "old"
			continue
		case strings.HasPrefix(line, "#"):
			if !strings.HasPrefix(line, "#<PID>") {
				section = "other"
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		switch {
		case section == "master" && f[1] == "master":
			seen = true
			p.MasterPID = pid
			p.Reloads, _ = strconv.Atoi(f[2])
			if i := strings.Index(line, "[failed: "); i >= 0 {
				p.Failed, _ = strconv.Atoi(strings.TrimSuffix(strings.Fields(line[i+len("[failed: "):])[0], "]"))
			}
		case section == "workers" && f[1] == "worker":
			p.Workers = append(p.Workers, pid)
		case section == "old" && f[1] == "worker":
			p.OldWorkers = append(p.OldWorkers, pid)
		}
	}
	if !seen {
		return p, fmt.Errorf("show proc: no master in answer %q", firstLine(out))
	}
	return p, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(l) > 120 {
		l = l[:120]
	}
	return l
}

// Session is one stream of `show sess`, as far as incuslb needs it.
type Session struct {
	ID      string // the stream's pointer, as `shutdown session` takes it
	Backend string
	Server  string // "" when it has none yet (or "<NONE>")
}

// ParseShowSess parses the answer of `show sess`: one line per stream,
// "0x55d0e5c3b9e0: proto=tcpv4 src=... fe=main be=api_pool srv=srv3 ...".
// Lines it does not recognise are skipped; "<NONE>" (2.6: backend) and
// "<none>" (server) are left empty.
func ParseShowSess(out string) []Session {
	var sessions []Session
	for _, l := range lines(out) {
		id, rest, ok := strings.Cut(strings.TrimSpace(l), ": ")
		if !ok || !strings.HasPrefix(id, "0x") || len(id) > 2+16 || strings.Trim(id[2:], "0123456789abcdef") != "" {
			continue
		}
		s := Session{ID: id}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			if strings.HasPrefix(v, "<") { // <NONE>, <none>: no backend or server
				v = ""
			}
			switch k {
			case "be":
				s.Backend = v
			case "srv":
				s.Server = v
			}
		}
		sessions = append(sessions, s)
	}
	return sessions
}
