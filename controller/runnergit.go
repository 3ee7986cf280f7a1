package controller

import (
	"context"
	"time"
)

// The runner's git source: a sync on a webhook or a poll, and the
// snapshot of specs it yields.

// SyncGit asks for a fetch of the git source soon; requests made while one
// is pending coalesce into it. It never blocks (the webhook calls it).
func (r *Runner) SyncGit(reason string) {
	r.init()
	select {
	case r.syncs <- reason:
	default:
	}
}

// watchGit fetches on every SyncGit and every GitInterval (the fallback for
// missed webhooks), and hands each new commit to the store loop.
func (r *Runner) watchGit(ctx context.Context) {
	tick := time.NewTicker(r.GitInterval)
	defer tick.Stop()
	for {
		var reason string
		select {
		case <-ctx.Done():
			return
		case reason = <-r.syncs:
		case <-tick.C:
			reason = "poll"
		}
		snap, ok := r.fetch(ctx, reason)
		if !ok {
			continue
		}
		select {
		case r.snapshots <- snap:
		case <-ctx.Done():
			return
		}
	}
}

// fetch syncs the git source and returns its new export when the branch
// moved.
func (r *Runner) fetch(ctx context.Context, reason string) (snapshot, bool) {
	moved, err := r.Git.Sync(ctx)
	if err != nil {
		r.Log.Error(err, "git fetch failed; the last fetched commit stays applied", "trigger", reason)
		return snapshot{}, false
	}
	if !moved {
		return snapshot{}, false
	}
	sha, path := r.Git.Revision()
	r.Log.Info("fetched a new commit", "commit", sha, "trigger", reason)
	return snapshot{path: path, revision: sha, skipped: r.Git.SkippedFiles()}, true
}
