package controller

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// GitSource keeps a local clone of one branch of a repository and exports
// the spec directory of the commit it last fetched. It uses the git CLI: it
// is on every Incus host, speaks every transport (file://, https, ssh) with
// the host's credential helpers and SSH config, and incuslb runs it with
// explicit arguments and no shell.
type GitSource struct {
	URL    string // repository: a path, file://, https:// or ssh URL
	Branch string
	Path   string // directory of specs inside the repository
	Dir    string // where the clone and the exports live (created)

	mu       sync.Mutex
	revision string // the commit last exported
	root     string // where it was exported
	export   string // its spec directory, inside root
}

// Revision is the commit last exported, and its spec directory.
func (g *GitSource) Revision() (sha, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revision, g.export
}

// Sync fetches the branch and, when it moved, exports the spec directory
// at the new commit. It reports whether it moved.
func (g *GitSource) Sync(ctx context.Context) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	clone := filepath.Join(g.Dir, "repo.git")
	if _, err := os.Stat(filepath.Join(clone, "HEAD")); err != nil {
		if err := os.MkdirAll(g.Dir, 0o700); err != nil {
			return false, err
		}
		if _, err := g.git(ctx, "", "init", "--bare", "--quiet", clone); err != nil {
			return false, err
		}
	}
	ref := "refs/remotes/origin/" + g.Branch
	if _, err := g.git(ctx, clone, "fetch", "--quiet", "--no-tags", "--force", g.URL, "+refs/heads/"+g.Branch+":"+ref); err != nil {
		return false, fmt.Errorf("fetching branch %s of %s: %w", g.Branch, g.URL, err)
	}
	out, err := g.git(ctx, clone, "rev-parse", "--verify", ref+"^{commit}")
	if err != nil {
		return false, err
	}
	sha := strings.TrimSpace(out)
	if sha == g.revision {
		return false, nil
	}
	export := filepath.Join(g.Dir, "export-"+sha)
	if err := g.exportTree(ctx, clone, sha, export); err != nil {
		return false, err
	}
	old := g.root
	g.revision, g.root, g.export = sha, export, filepath.Join(export, filepath.FromSlash(g.Path))
	if old != "" && old != export {
		_ = os.RemoveAll(old)
	}
	return true, nil
}

// exportTree writes the spec directory of commit sha to dir (git archive
// piped into tar, both without a shell).
func (g *GitSource) exportTree(ctx context.Context, clone, sha, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", clone, "archive", "--format=tar", sha, "--", g.Path)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var aErr, tErr bytes.Buffer
	archive.Stderr, untar.Stderr = &aErr, &tErr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("git archive %s -- %s: %v: %s (does the path exist at that commit?)", sha[:12], g.Path, err, strings.TrimSpace(aErr.String()))
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("extracting %s: %v: %s", g.Path, err, strings.TrimSpace(tErr.String()))
	}
	return nil
}

func (g *GitSource) git(ctx context.Context, dir string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", args[len(args)-1], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
