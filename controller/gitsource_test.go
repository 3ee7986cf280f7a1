package controller

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
