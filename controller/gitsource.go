package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/specs"
)

// Defaults of the GitSource limits. Whoever can push to the repository, or
// answer for its host, must not be able to stall the controller or make it
// read or write outside its export.
const (
	defaultGitFetchTimeout  = 2 * time.Minute
	defaultGitLocalTimeout  = 30 * time.Second
	defaultGitStallTime     = 30 * time.Second
	defaultGitMaxFileSize   = 1 << 20
	defaultGitMaxExportSize = 64 << 20
	defaultGitMaxFiles      = 10000

	// gitLowSpeedLimit (bytes/s) is http.lowSpeedLimit: an HTTP transfer
	// slower than this for StallTime is aborted.
	gitLowSpeedLimit = 1000
	// gitStderrLimit bounds the part of git's stderr kept for an error (a
	// remote can print as much as it likes).
	gitStderrLimit = 4 << 10
)

// GitSource keeps a local clone of one branch of a repository and exports
// the spec directory of the commit it last fetched. It uses the git CLI: it
// is on every Incus host, speaks every transport (file://, https, ssh) with
// the host's credential helpers and SSH config, and incuslb runs it with
// explicit arguments and no shell.
//
// Every git command has a deadline (FetchTimeout, LocalTimeout), a stalled
// transfer is aborted after StallTime, git never prompts, and every
// positional argument follows --end-of-options. The export takes regular
// files only (no symlink is created or followed), each at most MaxFileSize,
// MaxExportSize and MaxFiles in all. The URL may hold credentials: what
// GitSource logs, returns or prints shows it Redacted.
//
// Build it with NewGitSource, which refuses a URL, branch or path that git
// could read as an option; Sync checks them again.
type GitSource struct {
	URL    string // repository: a path, file://, https:// or ssh URL
	Branch string
	Path   string // directory of specs inside the repository
	Dir    string // where the clone and the exports live (created)

	// FetchTimeout bounds one fetch (default 2m); LocalTimeout bounds every
	// other git command, the export included (default 30s).
	FetchTimeout time.Duration
	LocalTimeout time.Duration
	// StallTime aborts a transfer that moves less than 1000 bytes/s for
	// that long (git's http.lowSpeedTime; for ssh, ConnectTimeout and
	// ServerAliveInterval×2). Default 30s.
	StallTime time.Duration
	// Limits of an export: each file (default 1 MiB; a larger one is left
	// out and reported), the sum of the files (default 64 MiB) and the
	// number of entries (default 10,000); over the last two, the commit is
	// refused.
	MaxFileSize   int64
	MaxExportSize int64
	MaxFiles      int
	// Log reports the files left out of an export.
	Log logr.Logger

	syncing    sync.Mutex // one Sync at a time; held over the fetch
	sshChecked bool       // under syncing: sshDefault was decided
	sshDefault bool       // under syncing: set GIT_SSH_COMMAND

	mu          sync.Mutex    // the fields below; never held over a git command
	revision    string        // the commit last exported
	root        string        // where it was exported
	export      string        // its spec directory, inside root
	skipped     []skippedFile // files left out of that export, with why
	lastSuccess time.Time
}

// NewGitSource returns the source of one branch of repo, its specs under
// path, with its clone in dir. It refuses (before running anything) a
// repository, branch or path that begins with "-" or could otherwise be
// read as something else than what it names.
func NewGitSource(repo, branch, specPath, dir string, log logr.Logger) (*GitSource, error) {
	g := &GitSource{URL: repo, Branch: branch, Path: specPath, Dir: dir, Log: log}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	g.Path = path.Clean(specPath)
	return g, nil
}

// Validate checks the repository, branch and path.
func (g *GitSource) Validate() error {
	var errs []error
	switch {
	case g.URL == "":
		errs = append(errs, errors.New("git source: the repository URL is empty"))
	case strings.HasPrefix(g.URL, "-"):
		errs = append(errs, fmt.Errorf("git source: the repository URL %q begins with \"-\" (git would read it as an option)", g.Redacted()))
	case hasControl(g.URL):
		errs = append(errs, fmt.Errorf("git source: the repository URL %q holds control characters", g.Redacted()))
	}
	if reason := badBranch(g.Branch); reason != "" {
		errs = append(errs, fmt.Errorf("git source: branch %q %s", g.Branch, reason))
	}
	if reason := badSpecPath(g.Path); reason != "" {
		errs = append(errs, fmt.Errorf("git source: path %q %s", g.Path, reason))
	}
	if g.Dir == "" {
		errs = append(errs, errors.New("git source: the clone directory is empty"))
	}
	return errors.Join(errs...)
}

// Redacted is the repository URL without its credentials: user
// information becomes ***, and so does every query value.
func (g *GitSource) Redacted() string { return RedactURL(g.URL) }

// String is Redacted, so that printing a GitSource never shows a token.
func (g *GitSource) String() string { return g.Redacted() }

// LogValue makes slog (and logr over slog) log the redacted URL.
func (g *GitSource) LogValue() slog.Value { return slog.StringValue(g.Redacted()) }

// Revision is the commit last exported, and its spec directory.
func (g *GitSource) Revision() (sha, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revision, g.export
}

// LastSuccess is when a Sync last succeeded (fetched and, if the branch
// moved, exported), or the zero time. It does not wait for a Sync under
// way.
func (g *GitSource) LastSuccess() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastSuccess
}

// Skipped lists the files of the last export that were left out (a
// symbolic link, not a regular file, over MaxFileSize), each with why.
func (g *GitSource) Skipped() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.skipped))
	for i, sk := range g.skipped {
		out[i] = fmt.Sprintf("%q: %s", sk.name, sk.reason)
	}
	return out
}

// SkippedFiles is Skipped as errors of the files where the export would
// have put them, for the store: the LoadBalancers a left-out file held are
// reported invalid with the reason, not taken as removed.
func (g *GitSource) SkippedFiles() specs.ErrorList {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out specs.ErrorList
	for _, sk := range g.skipped {
		out = append(out, specs.FieldError{Source: filepath.Join(g.root, filepath.FromSlash(sk.name)), Reason: sk.reason})
	}
	return out
}

// skippedFile is a file of a commit left out of its export.
type skippedFile struct{ name, reason string }

// Sync fetches the branch and, when it moved, exports the spec directory
// at the new commit. It reports whether it moved. A failure leaves the
// last export in place.
func (g *GitSource) Sync(ctx context.Context) (bool, error) {
	if err := g.Validate(); err != nil {
		return false, err
	}
	g.syncing.Lock()
	defer g.syncing.Unlock()
	clone := filepath.Join(g.Dir, "repo.git")
	if _, err := os.Stat(filepath.Join(clone, "HEAD")); err != nil {
		if err := os.MkdirAll(g.Dir, 0o700); err != nil {
			return false, err
		}
		if err := g.run(ctx, g.localTimeout(), "", nil, "init", "--bare", "--quiet", "--end-of-options", clone); err != nil {
			return false, err
		}
	}
	g.decideSSH(ctx, clone)
	ref := "refs/remotes/origin/" + g.Branch
	if err := g.fetch(ctx, clone, ref); err != nil {
		return false, fmt.Errorf("fetching branch %s of %s: %w", g.Branch, g.Redacted(), err)
	}
	var out bytes.Buffer
	if err := g.run(ctx, g.localTimeout(), clone, &out, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}"); err != nil {
		return false, fmt.Errorf("branch %s of %s: no commit: %w", g.Branch, g.Redacted(), err)
	}
	sha := strings.TrimSpace(out.String())
	if !isObjectName(sha) {
		return false, fmt.Errorf("branch %s of %s: git rev-parse gave %q, not a commit id", g.Branch, g.Redacted(), sha)
	}
	g.mu.Lock()
	same := sha == g.revision
	if same {
		g.lastSuccess = time.Now()
	}
	old := g.root
	g.mu.Unlock()
	if same {
		return false, nil
	}
	export := filepath.Join(g.Dir, "export-"+sha)
	skipped, err := g.exportTree(ctx, clone, sha, export)
	if err != nil {
		_ = os.RemoveAll(export)
		return false, fmt.Errorf("exporting %s of commit %s: %w", g.Path, sha[:12], err)
	}
	for _, s := range skipped {
		g.Log.Info("a file of the commit is left out of the specs", "commit", sha, "file", s.name, "reason", s.reason)
	}
	g.mu.Lock()
	g.revision, g.root, g.export = sha, export, filepath.Join(export, filepath.FromSlash(path.Clean(g.Path)))
	g.skipped, g.lastSuccess = skipped, time.Now()
	g.mu.Unlock()
	if old != "" && old != export {
		_ = os.RemoveAll(old)
	}
	return true, nil
}

// fetch updates ref from the branch, within FetchTimeout.
func (g *GitSource) fetch(ctx context.Context, clone, ref string) error {
	return g.run(ctx, g.fetchTimeout(), clone, nil, "fetch", "--quiet", "--no-tags", "--force", "--no-recurse-submodules",
		"--end-of-options", g.URL, "+refs/heads/"+g.Branch+":"+ref)
}

// decideSSH sets sshDefault: incuslb passes its own GIT_SSH_COMMAND (with
// connect and keep-alive timeouts) unless the operator chose the ssh
// command (GIT_SSH_COMMAND, GIT_SSH or core.sshCommand).
func (g *GitSource) decideSSH(ctx context.Context, clone string) {
	if g.sshChecked {
		return
	}
	if os.Getenv("GIT_SSH_COMMAND") != "" || os.Getenv("GIT_SSH") != "" {
		g.sshChecked = true
		return
	}
	var out bytes.Buffer
	err := g.run(ctx, g.localTimeout(), clone, &out, "config", "--get", "--end-of-options", "core.sshCommand")
	var exit *exec.ExitError
	switch {
	case err == nil:
		g.sshChecked = true // configured
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		g.sshChecked, g.sshDefault = true, true // not set
	}
	// Any other failure: decide on the next Sync, no GIT_SSH_COMMAND now.
}

// run runs one git command within timeout (and ctx), its stdout to
// stdout (nil: discarded).
func (g *GitSource) run(ctx context.Context, timeout time.Duration, dir string, stdout io.Writer, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd, stderr := g.command(ctx, dir, args...)
	cmd.Stdout = stdout
	if err := cmd.Run(); err != nil {
		return g.commandError(ctx, args[0], err, stderr.String())
	}
	return nil
}

// command prepares git with the hardened configuration and environment.
// The process and its children (git-remote-https, ssh) are in their own
// process group, killed as a whole when ctx ends.
func (g *GitSource) command(ctx context.Context, dir string, args ...string) (*exec.Cmd, *headBuffer) {
	stall := int((g.stallTime() + time.Second - 1) / time.Second)
	argv := []string{
		"-c", "protocol.ext.allow=never",
		"-c", "http.lowSpeedLimit=" + strconv.Itoa(gitLowSpeedLimit),
		"-c", "http.lowSpeedTime=" + strconv.Itoa(stall),
	}
	if dir != "" {
		argv = append([]string{"-C", dir}, argv...)
	}
	cmd := exec.CommandContext(ctx, "git", append(argv, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GCM_INTERACTIVE=never", "GIT_LITERAL_PATHSPECS=1", "LC_ALL=C")
	if g.sshDefault {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GIT_SSH_COMMAND=ssh -o BatchMode=yes -o ConnectTimeout=%d -o ServerAliveInterval=%d -o ServerAliveCountMax=2",
			stall, max(1, stall/2)))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	stderr := &headBuffer{max: gitStderrLimit}
	cmd.Stderr = stderr
	return cmd, stderr
}

// commandError describes a failed git command, its stderr redacted.
func (g *GitSource) commandError(ctx context.Context, verb string, err error, stderr string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("git %s: timed out: %s", verb, g.redact(strings.TrimSpace(stderr)))
	}
	return fmt.Errorf("git %s: %w: %s", verb, err, g.redact(strings.TrimSpace(stderr)))
}

func (g *GitSource) fetchTimeout() time.Duration {
	return orDefault(g.FetchTimeout, defaultGitFetchTimeout)
}

func (g *GitSource) localTimeout() time.Duration {
	return orDefault(g.LocalTimeout, defaultGitLocalTimeout)
}

func (g *GitSource) stallTime() time.Duration {
	return orDefault(g.StallTime, defaultGitStallTime)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *headBuffer) String() string { return b.buf.String() }
