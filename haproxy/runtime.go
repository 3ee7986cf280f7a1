package haproxy

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Runtime speaks HAProxy's runtime API on the admin socket and the master
// CLI on the master socket.
type Runtime struct {
	Admin  Socket
	Master Socket
}

// commandTimeout bounds one runtime API exchange.
const commandTimeout = 5 * time.Second

// Command sends one command to the admin socket and returns the answer.
// HAProxy closes the connection after answering a non-interactive command.
func (r *Runtime) Command(ctx context.Context, cmd string) (string, error) {
	return exchange(ctx, r.Admin, cmd+"\n")
}

// MasterCommand sends one command to the master CLI, which stays open
// until told to quit.
func (r *Runtime) MasterCommand(ctx context.Context, cmd string) (string, error) {
	return exchange(ctx, r.Master, cmd+";quit\n")
}

func exchange(ctx context.Context, s Socket, payload string) (string, error) {
	if s == nil {
		return "", fmt.Errorf("no runtime API socket configured")
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return s.Exchange(ctx, payload)
}

// Admin states (srv_admin_state bits) and operational states of a server.
const (
	adminMaint = 0x01 | 0x02 | 0x20 // forced, inherited, DNS maintenance
	adminDrain = 0x08 | 0x10        // forced, inherited drain
	// 0x04 (disabled in the config) stays set on parked slots even once
	// they are made ready at run time, so it does not mean maintenance.
	adminConfigDisabled = 0x04

	opStopped  = 0
	opStarting = 1
	opRunning  = 2
	opStopping = 3
)

// ServerState is one row of `show servers state`.
type ServerState struct {
	Backend     string
	Name        string
	Address     string
	Port        int
	OpState     int
	AdminState  int
	CheckStatus int
	// CheckHealth is the health-check counter: 0 is fully down, rise..
	// rise+fall-1 is up. A parked slot rests at 0 (see ParkSlot).
	CheckHealth int
	// Since is how long the server has been in its current state.
	Since time.Duration
	// Weight is the server's weight (srv_uweight), as set at run time or
	// in the config (a slot's is 1, HAProxy's default); HasWeight is false
	// when the answer had no such column.
	Weight    int
	HasWeight bool
}

// Rested reports whether a slot is parked as ParkSlot leaves it: at the
// parked address, out of maintenance and drain, down, health 0.
func (s ServerState) Rested() bool {
	return IsParked(s.Address, s.Port) && s.AdminState&(adminMaint|adminDrain) == 0 &&
		s.OpState == opStopped && s.CheckHealth == 0
}

// State is UP, DOWN, DRAIN or MAINT, as an operator reads it. A parked
// slot (at the parked address) is MAINT, whatever HAProxy says of it: at
// rest it is down, with its checks failing (see ParkSlot).
func (s ServerState) State() string {
	switch {
	case s.AdminState&adminMaint != 0:
		return "MAINT"
	case IsParked(s.Address, s.Port):
		return "MAINT"
	case s.AdminState&adminDrain != 0:
		return "DRAIN"
	case s.OpState == opRunning || s.OpState == opStarting:
		return "UP"
	}
	return "DOWN"
}

// ServersState returns the servers of backend ("" for every backend).
func (r *Runtime) ServersState(ctx context.Context, backend string) ([]ServerState, error) {
	out, err := r.Command(ctx, strings.TrimSpace("show servers state "+backend))
	if err != nil {
		return nil, err
	}
	return ParseServersState(out)
}

// Processes is what `show proc` on the master CLI says.
type Processes struct {
	MasterPID int
	// Reloads counts the master's reloads since it started.
	Reloads int
	// Failed counts failed reloads since the last successful one.
	Failed     int
	Workers    []int // PIDs of current workers
	OldWorkers []int // PIDs of workers still finishing sessions after a reload
}

// ShowProc asks the master for its processes.
func (r *Runtime) ShowProc(ctx context.Context) (Processes, error) {
	out, err := r.MasterCommand(ctx, "show proc")
	if err != nil {
		return Processes{}, err
	}
	return ParseShowProc(out)
}

// Sessions returns the current sessions (scur) of every server, by
// "backend/server", from `show stat`.
func (r *Runtime) Sessions(ctx context.Context) (map[string]int, error) {
	out, err := r.Command(ctx, "show stat -1 4 -1")
	if err != nil {
		return nil, err
	}
	rows, err := ParseStat(out)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int, len(rows))
	for _, row := range rows {
		m[row.Proxy+"/"+row.Server] = row.Sessions
	}
	return m, nil
}

// LoadedHash is the config hash (HashVar) of the config HAProxy's current
// worker loaded, or "" when that config sets none (one incuslb did not
// write).
func (r *Runtime) LoadedHash(ctx context.Context) (string, error) {
	out, err := r.Command(ctx, "show env "+HashVar)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), HashVar+"="); ok {
			return v, nil
		}
	}
	return "", nil
}

// CertSHA1 is the SHA-1 fingerprint of the certificate HAProxy serves
// from path (upper-case hex), or "" when it has none loaded there.
func (r *Runtime) CertSHA1(ctx context.Context, path string) (string, error) {
	out, err := r.Command(ctx, "show ssl cert "+path)
	if err != nil {
		return "", err
	}
	info, err := ParseCertInfo(out)
	if err != nil {
		return "", nil // not loaded under that name
	}
	return info.SHA1, nil
}

// Reload asks the master to reload: it re-executes itself with the config
// on disk, starts a new worker and lets the old ones finish. HAProxy 2.6
// answers nothing (the outcome shows in `show proc`); 2.8 and later answer
// when the reload is done, with "Success=1" or "Success=0" and the startup
// logs. The master closing the connection is the normal end of it.
func (r *Runtime) Reload(ctx context.Context) (string, error) {
	if r.Master == nil {
		return "", fmt.Errorf("no master socket configured")
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	out, err := r.Master.Exchange(ctx, "reload\n")
	if err != nil && strings.TrimSpace(out) == "" && ctx.Err() == nil {
		// 2.6 drops the connection as the master re-executes.
		return "", nil
	}
	return out, err
}

// reloadTimeout bounds a synchronous reload (2.8+ answers once the new
// worker is up).
const reloadTimeout = 30 * time.Second

// StartupLogs are the master's logs of its last (re)start, when the
// version keeps them ("" otherwise).
func (r *Runtime) StartupLogs(ctx context.Context) string {
	out, err := r.MasterCommand(ctx, "show startup-logs")
	if err != nil || strings.Contains(out, "Unknown command") {
		return ""
	}
	return strings.TrimSpace(out)
}

// OldSessions lists the streams of an old worker, through the master CLI
// (the admin socket reaches only the current worker).
func (r *Runtime) OldSessions(ctx context.Context, pid int) ([]Session, error) {
	out, err := r.MasterCommand(ctx, fmt.Sprintf("@!%d show sess", pid))
	if err != nil {
		return nil, err
	}
	return ParseShowSess(out), nil
}

// ShutdownOldSession closes one stream of an old worker.
func (r *Runtime) ShutdownOldSession(ctx context.Context, pid int, id string) error {
	out, err := r.MasterCommand(ctx, fmt.Sprintf("@!%d shutdown session %s", pid, id))
	if err != nil {
		return err
	}
	if o := strings.TrimSpace(out); o != "" {
		return fmt.Errorf("@!%d shutdown session %s: %s", pid, id, o)
	}
	return nil
}

// expectEmpty runs a command whose success answer is empty (or only
// whitespace); anything else is HAProxy's error message.
func (r *Runtime) expectEmpty(ctx context.Context, cmd string) error {
	out, err := r.Command(ctx, cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return fmt.Errorf("%s: %s", cmd, strings.TrimSpace(out))
	}
	return nil
}

// FillSlot points a slot at a member and makes it ready (see Ready).
func (r *Runtime) FillSlot(ctx context.Context, backend, slot, addr string, port int, gated bool) error {
	if err := r.pointInMaint(ctx, backend, slot, addr, port); err != nil {
		return err
	}
	return r.Ready(ctx, backend, slot, gated)
}

// FillRested points a rested slot (see ParkSlot) at a member. The slot is
// down with health 0 and checked every downinter, so gated, nothing more
// is needed: no request reaches the member before it has passed rise
// checks, and the first comes within downinter. Otherwise it is marked up
// at once.
func (r *Runtime) FillRested(ctx context.Context, backend, slot, addr string, port int, gated bool) error {
	if err := r.setAddr(ctx, backend+"/"+slot, addr, port); err != nil {
		return err
	}
	if gated {
		return nil
	}
	return r.expectEmpty(ctx, "set server "+backend+"/"+slot+" health up")
}

// Ready makes a slot that holds its member take traffic. Leaving
// maintenance, HAProxy counts a server healthy at once (health = rise), so
// it takes requests before any check of its own. gated keeps it from
// them until it has passed rise checks (see rest). Only a slot in
// maintenance may be gated: marking a draining member down would cut its
// sessions.
func (r *Runtime) Ready(ctx context.Context, backend, slot string, gated bool) error {
	if !gated {
		return r.expectEmpty(ctx, "set server "+backend+"/"+slot+" state ready")
	}
	return r.expectEmpty(ctx, rest(backend+"/"+slot))
}

// rest is the CLI line that takes a server out of maintenance or drain
// into "down, health 0, checks running": it leaves maintenance into drain
// (no balanced traffic; HAProxy sets health = rise), is marked down (health
// 0; on-marked-down cuts any session), then leaves drain still down. Its
// checks then bring it up after rise passes. In one line, the drain window
// lasts no longer than the CLI takes to read it.
func rest(server string) string {
	return fmt.Sprintf("set server %[1]s state drain; set server %[1]s health down; set server %[1]s state ready", server)
}

// Drain stops sending new sessions to a slot; its sessions finish.
func (r *Runtime) Drain(ctx context.Context, backend, slot string) error {
	return r.expectEmpty(ctx, "set server "+backend+"/"+slot+" state drain")
}

// EvictSlot takes a slot from a member that is gone without cutting
// anything: drained (no new request but a sticky one), then pointed at the
// parked address (where a retry is refused at once and redispatched).
// Requests still connecting to the member fail their connect and are
// redispatched; ParkSlot, later, cuts what is left.
func (r *Runtime) EvictSlot(ctx context.Context, backend, slot string) error {
	if err := r.expectEmpty(ctx, "set server "+backend+"/"+slot+" state drain"); err != nil {
		return err
	}
	return r.setAddr(ctx, backend+"/"+slot, ParkedAddress, ParkedPort)
}

// ParkSlot moves a slot to the parked address and rests it there: down,
// health 0, out of maintenance, its checks failing at once (nothing
// listens there) every downinter. Maintenance would be the natural state,
// but HAProxy (2.6 and later) keeps the check timer of a server in
// maintenance ticking at its regular interval, so the member that fills
// the slot would wait up to a whole interval for its first check; a down
// server is checked every downinter, and so is the member that fills a
// rested slot (FillRested). Going through maintenance first cuts the
// sessions of a member that held the slot.
func (r *Runtime) ParkSlot(ctx context.Context, backend, slot string) error {
	if err := r.pointInMaint(ctx, backend, slot, ParkedAddress, ParkedPort); err != nil {
		return err
	}
	return r.expectEmpty(ctx, rest(backend+"/"+slot))
}

// RestSlots rests parked slots ("backend/slot") already at the parked
// address: a new worker starts them in maintenance, as the config says.
// Commands go 30 slots to a CLI line.
func (r *Runtime) RestSlots(ctx context.Context, slots []string) error {
	for len(slots) > 0 {
		n := min(len(slots), 30)
		lines := make([]string, n)
		for i, s := range slots[:n] {
			lines[i] = rest(s)
		}
		if err := r.expectEmpty(ctx, strings.Join(lines, "; ")); err != nil {
			return err
		}
		slots = slots[n:]
	}
	return nil
}

// pointInMaint puts a slot in maintenance and points it at addr:port.
func (r *Runtime) pointInMaint(ctx context.Context, backend, slot, addr string, port int) error {
	s := backend + "/" + slot
	if err := r.expectEmpty(ctx, "set server "+s+" state maint"); err != nil {
		return err
	}
	return r.setAddr(ctx, s, addr, port)
}

// setAddr points server s ("backend/slot") at addr:port.
func (r *Runtime) setAddr(ctx context.Context, s, addr string, port int) error {
	out, err := r.Command(ctx, fmt.Sprintf("set server %s addr %s port %d", s, addr, port))
	if err != nil {
		return err
	}
	if o := strings.TrimSpace(out); o != "" && !strings.Contains(o, "changed") && !strings.Contains(o, "no need to change") {
		return fmt.Errorf("set server %s addr: %s", s, o)
	}
	return nil
}

// SetCert replaces a loaded certificate without a reload: `set ssl cert`
// with the PEM (which must hold no blank line), then `commit ssl cert`. On a
// failed commit the transaction is aborted and the old certificate stays.
func (r *Runtime) SetCert(ctx context.Context, path string, pemData []byte) error {
	return r.setSSL(ctx, "cert", path, pemData)
}

// setSSL is one transaction on a loaded SSL object of kind ("cert",
// "ca-file") at path: set, then commit; aborted when HAProxy refuses
// either, so the old object stays.
func (r *Runtime) setSSL(ctx context.Context, kind, path string, pemData []byte) error {
	body := strings.TrimSpace(string(pemData))
	if strings.Contains(body, "\n\n") {
		return fmt.Errorf("set ssl %s %s: the PEM holds a blank line", kind, path)
	}
	out, err := r.Command(ctx, "set ssl "+kind+" "+path+" <<\n"+body+"\n")
	if err != nil {
		return err
	}
	if o := strings.ToLower(out); !strings.Contains(o, "transaction created") && !strings.Contains(o, "transaction updated") {
		_, _ = r.Command(ctx, "abort ssl "+kind+" "+path)
		return fmt.Errorf("set ssl %s %s: %s", kind, path, strings.TrimSpace(out))
	}
	out, err = r.Command(ctx, "commit ssl "+kind+" "+path)
	if err != nil || !strings.Contains(out, "Success!") {
		_, _ = r.Command(ctx, "abort ssl "+kind+" "+path)
		if err == nil {
			err = fmt.Errorf("commit ssl %s %s: %s", kind, path, strings.TrimSpace(out))
		}
		return err
	}
	return nil
}
