package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// lbStatus is what `incuslb status` shows of one LoadBalancer.
type lbStatus struct {
	Name     string `json:"name"`
	Instance string `json:"instance"` // project/name
	State    string `json:"state"`    // the instance's status
	Address  string `json:"address,omitempty"`
	Address6 string `json:"address6,omitempty"` // its global IPv6 address, if any
	// VirtualIP and HoldsVirtualIP: a replica of a pair, and whether the
	// pair's virtual address is on it now.
	VirtualIP       string            `json:"virtualIP,omitempty"`
	HoldsVirtualIP  bool              `json:"holdsVirtualIP,omitempty"`
	VirtualIPHolder string            `json:"virtualIPHolder,omitempty"` // project/name of the replica that holds it
	Status          controller.Status `json:"status"`
	Servers         []serverStatus    `json:"servers"`
	HAProxy         *haproxyStatus    `json:"haproxy,omitempty"`
	RuntimeErr      string            `json:"runtimeError,omitempty"`
}

// haproxyStatus is what HAProxy itself says it runs.
type haproxyStatus struct {
	LoadedConfig  string      `json:"loadedConfig"` // hash of the config the current worker loaded; "" when not incuslb's
	Reloads       int         `json:"reloads"`
	FailedReloads int         `json:"failedReloads"`
	OldWorkers    []oldWorker `json:"oldWorkers"`
}

// oldWorker is a worker left from an earlier reload.
type oldWorker struct {
	PID      int `json:"pid"`
	Sessions int `json:"sessions"`
}

type serverStatus struct {
	Pool    string `json:"pool"`
	Server  string `json:"server"`
	Member  string `json:"member,omitempty"`
	Address string `json:"address"`
	State   string `json:"state"` // UP, DOWN, DRAIN, MAINT
	Since   string `json:"since"`
}

func (e *env) status(args []string) error {
	fs := e.newFlags("status", "status [NAME] [-o text|json] [--remote NAME]")
	output := fs.String("o", "text", "output format: text or json")
	via := fs.String("runtime-via", "auto", "reach HAProxy's runtime API through the host socket (auto) or through exec in the instance (exec)")
	cf := addClusterFlags(fs)
	lf := addLeaseFlags(fs, false)
	var name string
	if err := parse(fs, args, &name); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return usageErrorf("-o must be text or json")
	}
	if *via != "auto" && *via != "exec" {
		return usageErrorf("--runtime-via must be auto or exec")
	}
	c, err := incus.Connect(e.ctx, *cf.remote)
	if err != nil {
		return err
	}
	insts, err := c.ListAllProjects(e.ctx, controller.KeyLB)
	if err != nil {
		return err
	}
	var out []lbStatus
	for _, inst := range insts {
		lbName := inst.Config[controller.KeyLB]
		if name != "" && lbName != name {
			continue
		}
		out = append(out, e.observe(c, inst, *via == "exec", *cf.socketDir))
	}
	if name != "" && len(out) == 0 {
		return fmt.Errorf("no LoadBalancer %q has an instance (apply it first)", name)
	}
	held := map[string]string{} // LB -> the replica that holds its virtual address
	for _, s := range out {
		if s.HoldsVirtualIP {
			held[s.Name] = s.Instance
		}
	}
	for i := range out {
		out[i].VirtualIPHolder = held[out[i].Name]
	}
	leader, err := liveHolder(e.ctx, c, *lf.profile)
	if err != nil {
		leader.Holder = "unknown (" + err.Error() + ")"
	}
	if *output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if *lf.profile != "" {
		if leader.Holder == "" {
			fmt.Fprintf(e.stdout, "leader: none (lease %q not held)\n\n", *lf.profile)
		} else {
			fmt.Fprintf(e.stdout, "leader: %s (lease %q, generation %d, renewed %s ago)\n\n", leader.Holder, *lf.profile,
				leader.Generation, time.Since(leader.Renewed).Truncate(time.Millisecond))
		}
	}
	for i, s := range out {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		printStatus(e, s)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no LoadBalancers found")
	}
	return nil
}

// observe reads one LB's recorded status and its servers' live state.
func (e *env) observe(c *incus.Client, inst incus.Instance, viaExec bool, socketDir string) lbStatus {
	s := lbStatus{
		Name:     inst.Config[controller.KeyLB],
		Instance: inst.Project + "/" + inst.Name,
		State:    inst.Status,
		Status:   controller.StatusFromConfig(inst.Config),
		Servers:  []serverStatus{},
	}
	s.VirtualIP = s.Status.VirtualIP
	vip := strings.Split(s.VirtualIP, "/")[0]
	for _, a := range inst.Addresses[specs.DefaultNIC] {
		switch {
		case vip != "" && a == vip:
			s.HoldsVirtualIP = true
		case s.Address == "":
			s.Address = a
		}
	}
	s.Address6 = inst.IPv6(specs.DefaultNIC)
	if !inst.Running() {
		s.RuntimeErr = "the instance is not running"
		return s
	}
	lb := &specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: s.Name},
		Spec: specs.LoadBalancerSpec{Instance: specs.InstanceSpec{Name: inst.Name, Project: inst.Project}}}
	a := &controller.Applier{Incus: c, ExecRuntime: viaExec || !c.LocalMember(e.ctx, inst.Location), SocketDir: socketDir}
	rt := a.Runtime(lb)
	states, err := rt.ServersState(e.ctx, "")
	if err != nil {
		s.RuntimeErr = err.Error()
		return s
	}
	if p, err := rt.ShowProc(e.ctx); err == nil {
		h := &haproxyStatus{Reloads: p.Reloads, FailedReloads: p.Failed, OldWorkers: []oldWorker{}}
		for _, pid := range p.OldWorkers {
			if sess, err := rt.OldSessions(e.ctx, pid); err == nil {
				h.OldWorkers = append(h.OldWorkers, oldWorker{PID: pid, Sessions: len(sess)})
			}
		}
		h.LoadedConfig, _ = rt.LoadedHash(e.ctx)
		s.HAProxy = h
	}
	// Slot -> member names come from the config incuslb wrote.
	layout := haproxy.Layout{}
	if cfg, err := c.ReadFile(e.ctx, inst.Project, inst.Name, haproxy.ConfigPath); err == nil {
		layout = haproxy.ParseLayout(cfg, nil)
	} else if !errors.Is(err, incus.ErrNotFound) {
		s.RuntimeErr = err.Error()
	}
	for _, st := range states {
		endpoint := haproxy.Slot{Address: st.Address, Port: st.Port}.Endpoint() // [v6]:port
		member := ""
		if slots := layout[st.Backend]; len(slots) > 0 {
			for i, sl := range slots {
				if haproxy.SlotName(i) == st.Name && sl.Endpoint() == endpoint {
					member = sl.Member
				}
			}
			if member == "" && st.State() == "MAINT" {
				continue // a parked slot
			}
		}
		s.Servers = append(s.Servers, serverStatus{
			Pool: st.Backend, Server: st.Name, Member: member,
			Address: endpoint,
			State:   st.State(), Since: st.Since.String(),
		})
	}
	sort.SliceStable(s.Servers, func(i, j int) bool { return s.Servers[i].Pool < s.Servers[j].Pool })
	return s
}

func printStatus(e *env, s lbStatus) {
	fmt.Fprintf(e.stdout, "LoadBalancer %s\n", s.Name)
	fmt.Fprintf(e.stdout, "  instance:   %s (%s", s.Instance, s.State)
	if s.Address != "" {
		fmt.Fprintf(e.stdout, ", %s", s.Address)
	}
	if s.Address6 != "" {
		fmt.Fprintf(e.stdout, ", %s", s.Address6)
	}
	fmt.Fprintln(e.stdout, ")")
	if s.VirtualIP != "" {
		held := "held by no replica"
		switch {
		case s.HoldsVirtualIP:
			held = "held here"
		case s.VirtualIPHolder != "":
			held = "held by " + s.VirtualIPHolder
		}
		fmt.Fprintf(e.stdout, "  virtual IP: %s (%s)\n", s.VirtualIP, held)
	}
	st := s.Status
	applied := "never"
	if !st.AppliedAt.IsZero() {
		applied = fmt.Sprintf("%s (%s ago)", st.AppliedAt.Format(time.RFC3339), time.Since(st.AppliedAt).Truncate(time.Second))
	}
	fmt.Fprintf(e.stdout, "  generation: %d (spec %s, config %s)\n", st.Generation, orDash(st.SpecHash), orDash(st.ConfigHash))
	fmt.Fprintf(e.stdout, "  applied:    %s\n", applied)
	if st.Source != "" {
		fmt.Fprintf(e.stdout, "  source:     %s\n", st.Source)
	}
	if st.Revision != "" {
		fmt.Fprintf(e.stdout, "  commit:     %s\n", st.Revision)
	}
	var conds []string
	for _, c := range st.Conditions {
		cs := fmt.Sprintf("%s=%s", c.Type, c.Status)
		if c.Reason != "" {
			cs += " (" + c.Reason + ")"
		}
		conds = append(conds, cs)
	}
	fmt.Fprintf(e.stdout, "  conditions: %s\n", orDash(strings.Join(conds, ", ")))
	for _, c := range st.Conditions {
		if c.Status == "True" && c.Type == controller.ConditionDegraded && c.Message != "" {
			fmt.Fprintf(e.stdout, "  degraded:   %s\n", strings.ReplaceAll(c.Message, "\n", "\n              "))
		}
	}
	for i, c := range st.Certificates {
		label := "              "
		if i == 0 {
			label = "  certs:      "
		}
		left := "expiry unknown"
		if !c.NotAfter.IsZero() {
			left = fmt.Sprintf("not after %s (%s)", c.NotAfter.Format("2006-01-02 15:04 MST"), untilText(time.Until(c.NotAfter)))
		}
		if c.Name == "(pending)" {
			left = "no certificate yet"
		}
		fmt.Fprintf(e.stdout, "%s%s: %s, issuer %s, %s, from %s", label, c.Name, orDash(strings.Join(c.Hosts, " ")), orDash(c.Issuer), left, orDash(c.Source))
		if !c.NextRenewal.IsZero() {
			fmt.Fprintf(e.stdout, ", renewal %s (%s)", c.NextRenewal.Format("2006-01-02 15:04 MST"), untilText(time.Until(c.NextRenewal)))
		}
		fmt.Fprintln(e.stdout)
		if c.Error != "" {
			fmt.Fprintf(e.stdout, "              last order failed: %s\n", c.Error)
		}
	}
	if s.RuntimeErr != "" {
		fmt.Fprintf(e.stdout, "  servers:    unknown: %s\n", s.RuntimeErr)
		return
	}
	if h := s.HAProxy; h != nil {
		loaded := "a config incuslb did not write"
		switch {
		case h.LoadedConfig != "" && h.LoadedConfig == st.ConfigHash:
			loaded = "config " + h.LoadedConfig + " (the one recorded)"
		case h.LoadedConfig != "":
			loaded = "config " + h.LoadedConfig + " (NOT the recorded " + orDash(st.ConfigHash) + ")"
		}
		fmt.Fprintf(e.stdout, "  haproxy:    runs %s; %d reload(s), %d failed\n", loaded, h.Reloads, h.FailedReloads)
		for _, o := range h.OldWorkers {
			fmt.Fprintf(e.stdout, "  old worker: pid %d, %d session(s) opened before a reload\n", o.PID, o.Sessions)
		}
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POOL\tSERVER\tMEMBER\tADDRESS\tSTATE\tSINCE")
	for _, sv := range s.Servers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", sv.Pool, sv.Server, orDash(sv.Member), sv.Address, sv.State, sv.Since)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// untilText says how long until a time, in days when that is long.
func untilText(d time.Duration) string {
	switch {
	case d < 0:
		return "expired"
	case d < 48*time.Hour:
		return "in " + d.Truncate(time.Minute).String()
	}
	return fmt.Sprintf("in %d days", int(d.Hours()/24))
}
