package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/failpoint"
	"github.com/incuslb/incuslb/specs"
)

// Failpoints of a reload (see internal/failpoint).
const FailpointAfterRename = "after-config-rename"

// stage is the files of one reload: temporary names until validated.
type stage struct {
	certTmps                                          map[string]string // certificate path -> its temporary file
	listTmp, checkListTmp, cfgTmp, checkTmp, stateTmp string
	uid, gid                                          int64
	certsRenamed, listRenamed, cfgRenamed             bool
}

// reload writes the desired config (and certificate) under temporary
// names, has HAProxy check them together, renames them into place, and
// reloads HAProxy through its master CLI (or starts it when it was not
// running); then it confirms from HAProxy itself that the current worker
// loaded the desired config. It needs nothing in the instance but haproxy
// and a POSIX shell.
//
// If the reload fails, the old worker keeps serving. The previous files
// are put back when they are what HAProxy runs, so that the disk matches
// what runs; either way the next pass sees loaded != desired and tries
// again, with backoff.
func (a *Applier) reload(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, obs *Observation, p *Plan, log logr.Logger) error {
	in := lb.Spec.Instance
	st := &stage{certTmps: map[string]string{}}
	defer a.removeTemps(ctx, lb, st)
	listPath := haproxy.CrtListPath(lb, haproxy.Options{})
	var err error
	if c := &p.certs; c.diskChanges() {
		if st.uid, st.gid, err = a.haproxyIDs(ctx, lb); err != nil {
			return err
		}
		if err := a.Incus.Mkdir(ctx, in.Project, in.Name, haproxy.CertDir, incus.FileMode{UID: 0, GID: st.gid, Mode: 0o750}); err != nil {
			return err
		}
		if c.acmeMap {
			// Empty, and read by no HAProxy yet: written in place.
			if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ACMEMapPath(lb, haproxy.Options{}), nil,
				incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o640}); err != nil {
				return err
			}
		}
		for _, f := range c.write {
			if st.certTmps[f.Path], err = a.Incus.WriteTemp(ctx, in.Project, in.Name, f.Path, f.PEM, incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
				return err
			}
		}
		for _, f := range c.backendWrite {
			if st.certTmps[f.Path], err = a.Incus.WriteTemp(ctx, in.Project, in.Name, f.Path, f.PEM, incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
				return err
			}
		}
		if c.crtList != nil {
			if st.listTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, listPath, c.crtList, incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o640}); err != nil {
				return err
			}
		}
	}
	if !bytes.Equal(obs.File, p.desired) {
		if st.cfgTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, haproxy.ConfigPath, p.desired, rootFile); err != nil {
			return err
		}
	}
	// The new worker carries over the state of draining members and of
	// every slot that keeps its endpoint (see haproxy.StateFile).
	state := haproxy.StateFile(obs.StateText, p.layout, p.draining)
	if st.stateTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, haproxy.ServerStateFile, state, rootFile); err != nil {
		return err
	}
	// HAProxy checks the desired config, reading the staged certificate.
	check := haproxy.ConfigPath
	if st.cfgTmp != "" {
		check = st.cfgTmp
	}
	if len(st.certTmps) > 0 || st.listTmp != "" {
		cfg := p.desired
		if lb.Spec.Frontend.TLS != nil {
			// The check reads the staged certificates through a crt-list
			// of its own that names them.
			paths := haproxy.ParseCrtList(string(p.certs.crtList))
			if p.certs.crtList == nil {
				paths = haproxy.ParseCrtList(string(obs.Certs.CrtList))
			}
			for i, path := range paths {
				if tmp, ok := st.certTmps[path]; ok {
					paths[i] = tmp
				}
			}
			if st.checkListTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, listPath, haproxy.CrtList(paths), incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o640}); err != nil {
				return err
			}
			cfg = bytes.ReplaceAll(cfg, []byte(" crt-list "+listPath+" "), []byte(" crt-list "+st.checkListTmp+" "))
		}
		// The pools' staged backendTLS files, which their servers name.
		for _, f := range p.certs.backendWrite {
			cfg = stagedBackendPath(cfg, f.Path, st.certTmps[f.Path])
		}
		if st.checkTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, haproxy.ConfigPath, cfg, rootFile); err != nil {
			return err
		}
		check = st.checkTmp
	}
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"haproxy", "-c", "-f", check}, nil)
	if err != nil {
		return err
	}
	if res.Code != 0 {
		out := strings.ReplaceAll(res.Output(), st.checkListTmp, listPath)
		for path, tmp := range st.certTmps {
			out = strings.ReplaceAll(out, tmp, path)
		}
		return fmt.Errorf("HAProxy rejects the new config; nothing was changed and the running config keeps serving:\n%s", alerts(out, check))
	}

	for path, tmp := range st.certTmps {
		if err := a.Incus.Rename(ctx, in.Project, in.Name, tmp, path); err != nil {
			return err
		}
		delete(st.certTmps, path)
		st.certsRenamed = true
	}
	if st.listTmp != "" {
		if err := a.Incus.Rename(ctx, in.Project, in.Name, st.listTmp, listPath); err != nil {
			return err
		}
		st.listTmp, st.listRenamed = "", true
	}
	if err := a.Incus.Rename(ctx, in.Project, in.Name, st.stateTmp, haproxy.ServerStateFile); err != nil {
		return err
	}
	st.stateTmp = ""
	if st.cfgTmp != "" {
		if err := a.Incus.Rename(ctx, in.Project, in.Name, st.cfgTmp, haproxy.ConfigPath); err != nil {
			return err
		}
		st.cfgTmp, st.cfgRenamed = "", true
	}
	failpoint.Kill(FailpointAfterRename)

	log.Info("reloading HAProxy", "reason", string(p.Reload), "detail", p.ReloadDetail)
	carry := startRateCarry(ctx, rt, lb, obs, p)
	if p.StartHAProxy {
		err = a.startHAProxy(ctx, lb, rt, p.hash)
	} else {
		err = reloadAndConfirm(ctx, rt, obs.Proc, p.hash, func() string { return a.journalAlerts(ctx, lb) })
	}
	if err != nil {
		return a.putBack(ctx, lb, obs, p, st, err)
	}
	carry.finish(ctx, rt, log)
	var parkedSlots []string
	for pool, slots := range p.layout {
		for i, s := range slots {
			if s.Parked() {
				parkedSlots = append(parkedSlots, pool+"/"+haproxy.SlotName(i))
			}
		}
	}
	if err := rt.RestSlots(ctx, parkedSlots); err != nil {
		// Only the first check of a joining member waits longer; the next
		// pass parks these slots again.
		log.Info("could not rest the parked slots of the new worker", "err", err.Error())
	}
	if weighted(p.weights, obs.Servers) {
		ops, err := applyWeightsAfterReload(ctx, lb, rt, p)
		for _, op := range ops {
			p.Runtime = append(p.Runtime, op.String())
			log.Info("runtime update", "kind", op.kind, "change", op.String())
		}
		if err != nil {
			// The next pass sets them.
			log.Info("could not set the weights of the new worker", "err", err.Error())
		}
	}
	return nil
}

// putBack restores the previous files after a failed reload when they are
// what HAProxy runs (so that a restart of HAProxy does not pick up a
// config it refused), and says what it did.
func (a *Applier) putBack(ctx context.Context, lb *specs.LoadBalancer, obs *Observation, p *Plan, st *stage, cause error) error {
	in := lb.Spec.Instance
	pools := haproxy.SelectorPools(lb)
	loadedFile := obs.LoadedHash != "" && obs.File != nil &&
		haproxy.ClaimedHash(obs.File) == obs.LoadedHash && haproxy.ConfigHash(obs.File, pools) == obs.LoadedHash
	if !loadedFile || (!st.cfgRenamed && !st.certsRenamed && !st.listRenamed) {
		return fmt.Errorf("%w; %s; the desired config stays on disk and the next pass retries", cause, lowerFirst(obs.describeLoaded()))
	}
	var failed []string
	if st.cfgRenamed {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ConfigPath, obs.File, rootFile); err != nil {
			failed = append(failed, "config: "+err.Error())
		}
	}
	if st.certsRenamed {
		for _, f := range p.certs.write {
			if old := obs.Certs.Files[f.Path]; old != nil {
				if err := a.Incus.WriteFile(ctx, in.Project, in.Name, f.Path, old,
					incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
					failed = append(failed, "certificate "+f.Path+": "+err.Error())
				}
			}
		}
	}
	if st.certsRenamed {
		for _, f := range p.certs.backendWrite {
			if old := obs.Certs.Backend.Files[f.Path]; old != nil {
				if err := a.Incus.WriteFile(ctx, in.Project, in.Name, f.Path, old,
					incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
					failed = append(failed, "backend file "+f.Path+": "+err.Error())
				}
			}
		}
	}
	if st.listRenamed && obs.Certs.CrtList != nil {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.CrtListPath(lb, haproxy.Options{}), obs.Certs.CrtList,
			incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o640}); err != nil {
			failed = append(failed, "crt-list: "+err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w (and putting the previous files back failed: %s)", cause, strings.Join(failed, "; "))
	}
	return fmt.Errorf("%w; HAProxy keeps running config %s, whose files were put back", cause, obs.LoadedHash)
}

func (a *Applier) removeTemps(ctx context.Context, lb *specs.LoadBalancer, st *stage) {
	in := lb.Spec.Instance
	tmps := []string{st.listTmp, st.checkListTmp, st.cfgTmp, st.checkTmp, st.stateTmp}
	for _, tmp := range st.certTmps {
		tmps = append(tmps, tmp)
	}
	for _, tmp := range tmps {
		if tmp != "" {
			if err := a.Incus.Remove(ctx, in.Project, in.Name, tmp); err != nil {
				a.Log.Error(err, "removing a temporary file", "path", tmp)
			}
		}
	}
}

// confirmTimeout bounds the wait for HAProxy to show a reload or a start.
const confirmTimeout = 20 * time.Second

// reloadAndConfirm reloads through the master CLI and waits until the
// current worker runs config want, or the master reports the reload
// failed. before is `show proc` from before the reload.
func reloadAndConfirm(ctx context.Context, rt *haproxy.Runtime, before haproxy.Processes, want string, journal func() string) error {
	answer, err := rt.Reload(ctx)
	if err != nil {
		return fmt.Errorf("asking HAProxy's master to reload: %w", err)
	}
	if ok, known, logs := haproxy.ParseReloadAnswer(answer); known && !ok {
		return fmt.Errorf("HAProxy failed to load the new config; the old worker keeps serving:\n%s", alerts(logs, ""))
	}
	return waitLoaded(ctx, rt, want, func(p haproxy.Processes) error {
		if p.Failed > before.Failed {
			words := alertsOnly(rt.StartupLogs(ctx)) // 2.8 and later
			if words == "" {
				words = journal() // 2.6 logs them only
			}
			if words == "" {
				words = "(HAProxy gave no reason; see its log in the instance)"
			}
			return fmt.Errorf("HAProxy failed to load the new config (the master reports %d failed reload(s)); the old worker keeps serving:\n%s", p.Failed, words)
		}
		return nil
	})
}

// waitLoaded polls until the current worker runs config want. failed, when
// it returns an error, ends the wait with it.
func waitLoaded(ctx context.Context, rt *haproxy.Runtime, want string, failed func(haproxy.Processes) error) error {
	deadline := time.Now().Add(confirmTimeout)
	var last error
	for {
		p, err := rt.ShowProc(ctx)
		switch {
		case err != nil:
			last = err
		case failed(p) != nil:
			return failed(p)
		case len(p.Workers) == 0:
			last = errors.New("no current worker yet")
		default:
			got, err := rt.LoadedHash(ctx)
			switch {
			case err != nil:
				last = err
			case got == want:
				return nil
			default:
				last = fmt.Errorf("the current worker runs config %q", got)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("could not confirm that HAProxy loaded config %s within %v: %v", want, confirmTimeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startScript starts HAProxy the way the image runs it: through systemd
// when systemd runs the instance, else directly in master-worker mode with
// the master socket where Debian's unit puts it.
var startScript = fmt.Sprintf(`if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl start haproxy
else
  mkdir -p /run/haproxy && haproxy -W -D -f %s -p /run/haproxy.pid -S %s
fi`, haproxy.ConfigPath, haproxy.MasterSocket)

// startHAProxy starts HAProxy on the config on disk and waits until it
// runs config want.
func (a *Applier) startHAProxy(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, want string) error {
	in := lb.Spec.Instance
	a.checked.remove(in.Project + "/" + in.Name) // look at the instance afresh next time too
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c", startScript}, nil)
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("starting HAProxy failed (exit %d): %s", res.Code, tail(res.Output(), 8))
	}
	return waitLoaded(ctx, rt, want, func(haproxy.Processes) error { return nil })
}

// journalAlerts is the last alerts HAProxy logged to the journal of the
// instance, when it has one (HAProxy 2.6 keeps no startup logs that the
// master CLI would show).
func (a *Applier) journalAlerts(ctx context.Context, lb *specs.LoadBalancer) string {
	in := lb.Spec.Instance
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c",
		"command -v journalctl >/dev/null 2>&1 && journalctl -u haproxy -n 40 --no-pager -o cat"}, nil)
	if err != nil || res.Code != 0 {
		return ""
	}
	return tail(alertsOnly(string(res.Stdout)), 5)
}

// alertsOnly keeps the [ALERT] lines of HAProxy's output ("" when none).
func alertsOnly(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "[ALERT]") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}

// alerts keeps the lines of HAProxy's output worth showing, with a
// temporary file name replaced by the real one.
func alerts(out, tmp string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "[ALERT]") || strings.Contains(l, "[WARNING]") {
			if tmp != "" {
				l = strings.ReplaceAll(l, tmp, haproxy.ConfigPath)
			}
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return tail(out, 10)
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
