package controller

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestGitSourceExportsEachNewCommit(t *testing.T) {
	work := t.TempDir()
	gitIn(t, work, "init", "--quiet", "--initial-branch=main")
	os.MkdirAll(filepath.Join(work, "lbs"), 0o755)
	os.WriteFile(filepath.Join(work, "lbs", "a.yaml"), []byte("one\n"), 0o644)
	gitIn(t, work, "add", ".")
	gitIn(t, work, "commit", "--quiet", "-m", "one")
	first := gitIn(t, work, "rev-parse", "HEAD")

	g := &GitSource{URL: work, Branch: "main", Path: "lbs", Dir: filepath.Join(t.TempDir(), "src")}
	moved, err := g.Sync(context.Background())
	if err != nil || !moved {
		t.Fatalf("first sync: %v %v", moved, err)
	}
	sha, path := g.Revision()
	if sha != first {
		t.Fatalf("revision %s, want %s", sha, first)
	}
	if b, _ := os.ReadFile(filepath.Join(path, "a.yaml")); string(b) != "one\n" {
		t.Fatalf("export: %q", b)
	}
	if moved, _ := g.Sync(context.Background()); moved {
		t.Fatal("a sync with no new commit moved")
	}
	os.WriteFile(filepath.Join(work, "lbs", "a.yaml"), []byte("two\n"), 0o644)
	gitIn(t, work, "commit", "--quiet", "-am", "two")
	if moved, err := g.Sync(context.Background()); err != nil || !moved {
		t.Fatalf("second sync: %v %v", moved, err)
	}
	_, path2 := g.Revision()
	if b, _ := os.ReadFile(filepath.Join(path2, "a.yaml")); string(b) != "two\n" {
		t.Fatalf("export: %q", b)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the previous export was not removed")
	}
}

// specRepo makes a repository with one commit on main holding lbs/a.yaml
// and whatever setup adds to the work tree.
func specRepo(t *testing.T, setup func(work string)) string {
	t.Helper()
	work := t.TempDir()
	gitIn(t, work, "init", "--quiet", "--initial-branch=main")
	if err := os.MkdirAll(filepath.Join(work, "lbs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "lbs", "a.yaml"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(work)
	}
	gitIn(t, work, "add", ".")
	gitIn(t, work, "commit", "--quiet", "-m", "one")
	return work
}

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestGitSourceFetchHasADeadline(t *testing.T) {
	addr := hangingServer(t)
	g := &GitSource{URL: "http://" + addr + "/repo.git", Branch: "main", Path: ".", Dir: t.TempDir(),
		FetchTimeout: time.Second, StallTime: time.Hour}
	start := time.Now()
	_, err := g.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("sync against a server that never answers: %v, want a time-out", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the sync returned after %s, FetchTimeout is 1s", d)
	}
	if !g.LastSuccess().IsZero() {
		t.Fatal("a failed sync set LastSuccess")
	}
}

func TestGitSourceStalledTransferIsAborted(t *testing.T) {
	addr := hangingServer(t)
	g := &GitSource{URL: "http://" + addr + "/repo.git", Branch: "main", Path: ".", Dir: t.TempDir(),
		FetchTimeout: time.Minute, StallTime: time.Second}
	start := time.Now()
	_, err := g.Sync(context.Background())
	if err == nil || strings.Contains(err.Error(), "timed out") {
		t.Fatalf("sync against a stalled server: %v, want git's own abort", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the stalled fetch was aborted after %s, StallTime is 1s", d)
	}
}

// fakeSSH puts an ssh first in PATH that records its arguments and fails.
func fakeSSH(t *testing.T) (record string) {
	t.Helper()
	bin := t.TempDir()
	record = filepath.Join(bin, "args")
	script := "#!/bin/sh\necho \"$@\" >> " + record + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, v := range []string{"GIT_SSH", "GIT_SSH_COMMAND"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)
	}
	t.Setenv("GIT_SSH_VARIANT", "ssh")
	return record
}

func TestGitSourceSSHHasTimeouts(t *testing.T) {
	record := fakeSSH(t)
	g := &GitSource{URL: "ssh://git@127.0.0.1:1/repo.git", Branch: "main", Path: ".", Dir: t.TempDir(), StallTime: 20 * time.Second}
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("the fake ssh succeeded")
	}
	args, _ := os.ReadFile(record)
	for _, want := range []string{"BatchMode=yes", "ConnectTimeout=20", "ServerAliveInterval=10", "ServerAliveCountMax=2"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("ssh ran with %q, without %s", args, want)
		}
	}
}

func TestGitSourceKeepsTheOperatorsSSHCommand(t *testing.T) {
	record := fakeSSH(t)
	os.Setenv("GIT_SSH_COMMAND", "ssh -o Mine=yes")
	g := &GitSource{URL: "ssh://git@127.0.0.1:1/repo.git", Branch: "main", Path: ".", Dir: t.TempDir()}
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("the fake ssh succeeded")
	}
	args, _ := os.ReadFile(record)
	if !strings.Contains(string(args), "Mine=yes") || strings.Contains(string(args), "ConnectTimeout") {
		t.Fatalf("ssh ran with %q, want the operator's GIT_SSH_COMMAND alone", args)
	}
}

func TestGitSourceRefusesOptionLikeArguments(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	repo := specRepo(t, nil)
	for _, tc := range []struct{ url, branch, path, want string }{
		{"--upload-pack=touch " + marker, "main", "lbs", "repository URL"},
		{repo, "--upload-pack=touch " + marker, "lbs", "branch"},
		{repo, "main", "--output=" + marker, "path"},
		{repo, "main:refs/heads/x", "lbs", "branch"},
		{repo, "main", "../../etc", "path"},
		{repo, "main", "/etc", "path"},
	} {
		dir := filepath.Join(t.TempDir(), "src")
		if _, err := NewGitSource(tc.url, tc.branch, tc.path, dir, logr.Discard()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewGitSource(%q, %q, %q): %v, want an error about the %s", tc.url, tc.branch, tc.path, err, tc.want)
		}
		g := &GitSource{URL: tc.url, Branch: tc.branch, Path: tc.path, Dir: dir}
		if _, err := g.Sync(context.Background()); err == nil {
			t.Errorf("Sync with (%q, %q, %q) succeeded", tc.url, tc.branch, tc.path)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Sync with (%q, %q, %q) ran something (%s exists)", tc.url, tc.branch, tc.path, dir)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the option ran")
	}
	if g, err := NewGitSource(repo, "release/v1.2", "./lbs/", t.TempDir(), logr.Discard()); err != nil || g.Path != "lbs" {
		t.Fatalf("a good source: %v %v", g, err)
	}
}

// TestGitSourceEndOfOptions bypasses the validation: git still reads the
// URL as a repository, not as --upload-pack.
func TestGitSourceEndOfOptions(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	clone := filepath.Join(t.TempDir(), "repo.git")
	gitIn(t, t.TempDir(), "init", "--quiet", "--bare", clone)
	g := &GitSource{URL: "--upload-pack=touch " + marker, Branch: "main"}
	if err := g.fetch(context.Background(), clone, "refs/remotes/origin/main"); err == nil {
		t.Fatal("fetch succeeded")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the URL ran as --upload-pack")
	}
}

func TestGitSourceRefusesTheExtTransport(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "protocol.allow")
	t.Setenv("GIT_CONFIG_VALUE_0", "always")
	g := &GitSource{URL: "ext::touch " + marker, Branch: "main", Path: ".", Dir: t.TempDir()}
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("sync over ext:: succeeded")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("ext:: ran a command")
	}
}

func TestRedactGitURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:tok3n@git.example.org/ops/lbs.git":                "https://***@git.example.org/ops/lbs.git",
		"https://ghp_abcdef@github.com/o/r.git":                         "https://***@github.com/o/r.git",
		"https://u:p@ss@host/r.git":                                     "https://***@host/r.git",
		"https://host/r.git?access_token=s3cr3t&x=1":                    "https://host/r.git?access_token=***&x=***",
		"ssh://git@host:2222/r.git":                                     "ssh://***@host:2222/r.git",
		"git@github.com:o/r.git":                                        "git@github.com:o/r.git",
		"/srv/lb-specs.git":                                             "/srv/lb-specs.git",
		"fatal: unable to access 'https://a:b@h/r/': Failed to connect": "fatal: unable to access 'https://***@h/r/': Failed to connect",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGitSourceNeverShowsCredentials(t *testing.T) {
	const token, qtoken = "s3cr3tT0kenXYZ", "qT0ken98765"
	addr := hangingServer(t)
	for _, u := range []string{
		"http://user:" + token + "@127.0.0.1:1/repo.git?access_token=" + qtoken,  // refused at once
		"http://user:" + token + "@" + addr + "/repo.git?access_token=" + qtoken, // times out
	} {
		var logs bytes.Buffer
		log := logr.FromSlogHandler(slog.NewJSONHandler(&logs, nil))
		g, err := NewGitSource(u, "main", ".", t.TempDir(), log)
		if err != nil {
			t.Fatal(err)
		}
		g.FetchTimeout = time.Second
		_, err = g.Sync(context.Background())
		if err == nil {
			t.Fatal("sync succeeded")
		}
		log.Info("git source", "git", g)
		shown := err.Error() + "\n" + logs.String() + "\n" + g.String() + "\n" + fmt.Sprint(g) + "\n" + g.Redacted()
		if strings.Contains(shown, token) || strings.Contains(shown, qtoken) {
			t.Fatalf("a credential is shown:\n%s", shown)
		}
		if !strings.Contains(err.Error(), "***") {
			t.Fatalf("the error does not name the repository: %v", err)
		}
	}
	// Git's stderr, whatever form it gives the URL in.
	g := &GitSource{URL: "https://user:" + token + "@h/r.git?access_token=" + qtoken}
	for _, stderr := range []string{
		"fatal: unable to access '" + g.URL + "'",
		"fatal: Authentication failed for 'https://h/r.git/' (password " + token + ")",
		"remote: token=" + qtoken,
	} {
		if got := g.redact(stderr); strings.Contains(got, token) || strings.Contains(got, qtoken) {
			t.Errorf("redact(%q) = %q", stderr, got)
		}
	}
}

func TestGitSourceExportsRegularFilesOnly(t *testing.T) {
	repo := specRepo(t, func(work string) {
		lbs := filepath.Join(work, "lbs")
		must(t, os.Symlink("/etc/passwd", filepath.Join(lbs, "passwd.yaml")))
		must(t, os.Symlink("../../x", filepath.Join(lbs, "up.pem")))
		must(t, os.MkdirAll(filepath.Join(lbs, "sub"), 0o755))
		must(t, os.Symlink("../../..", filepath.Join(lbs, "sub", "escape")))
		must(t, os.WriteFile(filepath.Join(lbs, "big.pem"), bytes.Repeat([]byte("x"), 1<<20+1), 0o644))
		must(t, os.WriteFile(filepath.Join(lbs, "sub", "b.yaml"), []byte("two\n"), 0o755))
	})
	var logs bytes.Buffer
	g, err := NewGitSource(repo, "main", "lbs", filepath.Join(t.TempDir(), "src"), logr.FromSlogHandler(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if moved, err := g.Sync(context.Background()); err != nil || !moved {
		t.Fatalf("sync: %v %v", moved, err)
	}
	if g.LastSuccess().Before(before) {
		t.Fatal("LastSuccess was not set")
	}
	_, dir := g.Revision()
	var exported []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			t.Errorf("%s exported as %v", p, d.Type())
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			exported = append(exported, filepath.ToSlash(rel))
		}
		return nil
	})
	must(t, err)
	if got := strings.Join(exported, " "); got != "a.yaml sub/b.yaml" {
		t.Fatalf("exported %s, want a.yaml sub/b.yaml", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "b.yaml")); string(b) != "two\n" {
		t.Fatalf("sub/b.yaml: %q", b)
	}
	skipped := strings.Join(g.Skipped(), "\n")
	for _, p := range []string{"lbs/passwd.yaml", "lbs/up.pem", "lbs/sub/escape", "lbs/big.pem"} {
		if !strings.Contains(skipped, `"`+p+`"`) || !strings.Contains(logs.String(), p) {
			t.Errorf("%s is not reported as left out:\n%s\n%s", p, skipped, logs.String())
		}
	}
}

func TestGitSourceRefusesAnOversizedExport(t *testing.T) {
	for name, tc := range map[string]struct {
		limit func(*GitSource)
		want  string
	}{
		"files": {func(g *GitSource) { g.MaxFiles = 3 }, "more than 3 files"},
		"bytes": {func(g *GitSource) { g.MaxExportSize = 10 }, "more than 10 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			repo := specRepo(t, func(work string) {
				for i := range 3 {
					must(t, os.WriteFile(filepath.Join(work, "lbs", fmt.Sprintf("f%d.yaml", i)), []byte("hello\n"), 0o644))
				}
			})
			g := &GitSource{URL: repo, Branch: "main", Path: "lbs", Dir: filepath.Join(t.TempDir(), "src")}
			tc.limit(g)
			if _, err := g.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("sync: %v, want %q", err, tc.want)
			}
			if sha, _ := g.Revision(); sha != "" {
				t.Fatal("the refused commit became the revision")
			}
			if m, _ := filepath.Glob(filepath.Join(g.Dir, "export-*")); len(m) != 0 {
				t.Fatalf("a refused export is left: %v", m)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestGitStderrIsBounded(t *testing.T) {
	b := &headBuffer{max: gitStderrLimit}
	for range 100 {
		if n, err := b.Write(bytes.Repeat([]byte("remote: spam\n"), 100)); n != 1300 || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if len(b.String()) != gitStderrLimit || !strings.HasPrefix(b.String(), "remote: spam\n") {
		t.Fatalf("kept %d bytes, want the first %d", len(b.String()), gitStderrLimit)
	}
}
