package specs_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// quickly runs f and fails the test when it has not returned within a few
// seconds: a read that blocks on a FIFO must fail, not hang the suite.
func quickly[T any](t *testing.T, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
	}
	panic("unreachable")
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadRegularFileRefusesAllButRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pem")
	mkfifo(t, fifo)
	zero := filepath.Join(dir, "zero.pem")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(dir, "exact.pem")
	if err := os.WriteFile(exact, bytes.Repeat([]byte("a"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:                          "not a regular file (it is a FIFO)",
		zero:                          "not a regular file (it is a character device)",
		"/dev/zero":                   "not a regular file (it is a character device)",
		dir:                           "not a regular file (it is a directory)",
		big:                           "larger than 1048576 bytes",
		filepath.Join(dir, "missing"): "does not exist",
	} {
		_, err := quickly(t, path, func() ([]byte, error) { return specs.ReadRegularFile(path, specs.MaxSpecFile) })
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), path) {
			t.Errorf("%s: got %v, want %q", path, err, want)
		}
	}
	if data, err := specs.ReadRegularFile(exact, 100); err != nil || len(data) != 100 {
		t.Errorf("a file of exactly max bytes: %d bytes, %v", len(data), err)
	}
	if _, err := specs.ReadRegularFile(exact, 99); err == nil || !strings.Contains(err.Error(), "larger than 99 bytes") {
		t.Errorf("a file one byte too large: %v", err)
	}
}

func TestLoadCertificateUnderStaysUnderTheRoot(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "certs")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := testcert.Write(root, "good.pem", "edge.example.org")
	testcert.Write(filepath.Join(root, "sub"), "nested.pem", "edge.example.org")
	outside := testcert.Write(top, "outside.pem", "edge.example.org")
	link := func(name, target string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("inside-link.pem", "good.pem")
	link("escape-link.pem", outside)
	link("escape-dir", top)
	link("zero.pem", "/dev/zero")
	mkfifo(t, filepath.Join(root, "fifo.pem"))
	if err := os.WriteFile(filepath.Join(root, "big.pem"), bytes.Repeat([]byte("a"), 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// A root reached through a symbolic link is resolved too.
	rootLink := filepath.Join(top, "root-link")
	if err := os.Symlink(root, rootLink); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ root, path, want string }{
		{root, good, ""},
		{root, "good.pem", ""},
		{root, "sub/nested.pem", ""},
		{root, "inside-link.pem", ""},
		{rootLink, "good.pem", ""},
		{rootLink, good, ""},
		{"/", good, ""},
		{root, "../outside.pem", "is outside the certificate root"},
		{root, "sub/../../outside.pem", "is outside the certificate root"},
		{root, "../nothing-here.pem", "is outside the certificate root"},
		{root, outside, "is outside the certificate root"},
		{root, "/etc/passwd", "is outside the certificate root"},
		{root, "escape-link.pem", "is outside the certificate root"},
		{root, "escape-dir/outside.pem", "is outside the certificate root"},
		{root, "zero.pem", "is outside the certificate root"},
		{"/", "/dev/zero", "not a regular file (it is a character device)"},
		{root, "fifo.pem", "not a regular file (it is a FIFO)"},
		{root, "big.pem", "larger than 1048576 bytes"},
		{root, "sub", "not a regular file (it is a directory)"},
		{root, "missing.pem", "does not exist"},
	} {
		_, err := quickly(t, tc.path, func() ([]byte, error) { return specs.LoadCertificateUnder(tc.root, tc.path) })
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s under %s: %v", tc.path, tc.root, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s under %s: got %v, want %q", tc.path, tc.root, err, tc.want)
		}
	}
	_, err := specs.LoadCertificateUnder(root, "../outside.pem")
	if want := "certificate file ../outside.pem is outside the certificate root " + root + " (--cert-root)"; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestValidateFilesUnderNamesTheRoot(t *testing.T) {
	root := t.TempDir()
	outside := testcert.Write(t.TempDir(), "x.pem", "edge.example.org")
	lb := valid(t)
	lb.Spec.Frontend.TLS = &specs.TLSSpec{CertificateFile: outside}
	if errs := specs.ValidateFiles(lb); len(errs) != 0 {
		t.Fatalf("ValidateFiles has no root: %v", errs)
	}
	errs := specs.ValidateFilesUnder(lb, root)
	if len(errs) != 1 || errs[0].Path != "spec.frontend.tls.certificateFile" || !strings.Contains(errs[0].Reason, "outside the certificate root") {
		t.Fatalf("got %v", errs)
	}
	lb.Spec.Frontend.TLS.CertificateFile = "/dev/zero"
	if errs := specs.ValidateFiles(lb); len(errs) != 1 || !strings.Contains(errs[0].Reason, "cannot read /dev/zero: not a regular file") {
		t.Fatalf("ValidateFiles reads /dev/zero: %v", errs)
	}
}

// TestFilesSkipsWhatItCannotReadSafely: a bad entry is a problem of its own
// file, never a hang, never a read outside the directory.
func TestFilesSkipsWhatItCannotReadSafely(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "specs")
	if err := os.MkdirAll(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "a.yaml"), base)
	write(filepath.Join(top, "secret.yaml"), base)
	write(filepath.Join(dir, "big.yaml"), base+strings.Repeat("# padding\n", 2<<20/10))
	mkfifo(t, filepath.Join(dir, "fifo.yaml"))
	for name, target := range map[string]string{
		"escape.yaml": filepath.Join(top, "secret.yaml"),
		"zero.yaml":   "/dev/zero",
		"inside.yml":  "a.yaml",
		"broken.yaml": "nowhere.yaml",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}

	files, skipped, err := quickly3(t, func() ([]string, specs.ErrorList, error) { return specs.ListFiles(dir) })
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "big.yaml"), filepath.Join(dir, "inside.yml")}
	if strings.Join(files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files: got %v, want %v", files, wantFiles)
	}
	want := map[string]string{
		"broken.yaml": "a symbolic link that leads nowhere",
		"escape.yaml": "outside the spec directory",
		"fifo.yaml":   "not a regular file (it is a FIFO)",
		"zero.yaml":   "outside the spec directory",
	}
	if len(skipped) != len(want) {
		t.Errorf("skipped: got %v", skipped)
	}
	for _, e := range skipped {
		if w := want[filepath.Base(e.Source)]; w == "" || !strings.Contains(e.Reason, w) {
			t.Errorf("%s: got %q, want %q", e.Source, e.Reason, w)
		}
	}
	// Files keeps its signature: the good files, and the skipped ones as
	// an ErrorList, so that a caller that stops there reads nothing wrong.
	if got, err := specs.Files(dir); len(got) != 3 || !specs.Invalid(err) {
		t.Errorf("Files: %v %v", got, err)
	}

	// Load reports each bad file on its own, the oversized one included.
	_, err = quickly(t, "Load", func() ([]*specs.LoadBalancer, error) { return specs.Load(dir, nil) })
	l, ok := err.(specs.ErrorList)
	if !ok || len(l) != 5 {
		t.Fatalf("Load: %v", err)
	}
	for _, e := range l {
		if filepath.Base(e.Source) == "big.yaml" && e.Reason != "larger than 1048576 bytes" {
			t.Errorf("big.yaml: %v", e)
		}
	}
	// A spec path that is itself a FIFO.
	if _, err := quickly(t, "Load fifo", func() ([]*specs.LoadBalancer, error) {
		return specs.Load(filepath.Join(dir, "fifo.yaml"), nil)
	}); err == nil || !strings.Contains(err.Error(), "not a regular file (it is a FIFO)") {
		t.Errorf("Load of a FIFO: %v", err)
	}
}

// TestFilesReportsUnreadableFiles: a file the controller may not read is a
// problem of that file. Root reads everything, so as root the check runs in
// a copy of the test binary started as nobody.
func TestFilesReportsUnreadableFiles(t *testing.T) {
	if dir := os.Getenv("INCUSLB_TEST_EACCES_DIR"); dir != "" {
		files, skipped, err := specs.ListFiles(dir)
		if err != nil || len(files) != 1 || len(skipped) != 1 || filepath.Base(skipped[0].Source) != "locked.yaml" ||
			skipped[0].Reason != "cannot be read: permission denied" {
			t.Fatalf("got %v %v %v", files, skipped, err)
		}
		return
	}
	dir, err := os.MkdirTemp("", "incuslb-eacces-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.yaml", "locked.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(base), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "locked.yaml"), 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Setenv("INCUSLB_TEST_EACCES_DIR", dir)
		TestFilesReportsUnreadableFiles(t)
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "specs.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestFilesReportsUnreadableFiles$", "-test.count=1")
	cmd.Env = append(os.Environ(), "INCUSLB_TEST_EACCES_DIR="+dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func quickly3[A, B any](t *testing.T, f func() (A, B, error)) (A, B, error) {
	t.Helper()
	type ab struct {
		a A
		b B
	}
	r, err := quickly(t, "ListFiles", func() (ab, error) {
		a, b, err := f()
		return ab{a, b}, err
	})
	return r.a, r.b, err
}

func TestSpecSizeLimits(t *testing.T) {
	huge := []byte(base + strings.Repeat("#", specs.MaxSpecFile))
	if _, err := specs.Parse(huge, "huge.yaml"); err == nil || !strings.Contains(err.Error(), "huge.yaml: larger than 1048576 bytes") {
		t.Errorf("Parse: %v", err)
	}
	if _, err := specs.Load("-", bytes.NewReader(huge)); err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("stdin: %v", err)
	}
}

// TestYAMLAliasesCannotAmplify: ten levels of ten aliases each would be
// 10^10 nodes; the document is refused from its few hundred bytes.
func TestYAMLAliasesCannotAmplify(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	b.WriteString("lol0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 10; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "lol%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(prev+", ", 10), ", "))
	}
	start := time.Now()
	_, err := specs.Parse([]byte(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "bomb.yaml: YAML aliases expand to more than 100000 nodes") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %v", d)
	}
	// A few aliases are fine.
	ok := strings.Replace(base, "spec:\n", "spec:\n  defaults:\n    healthCheck: &hc {path: /health}\n", 1)
	ok = strings.Replace(ok, "      port: 8080\n", "      port: 8080\n      healthCheck: *hc\n", 1)
	if lbs, err := specs.Parse([]byte(ok), "ok.yaml"); err != nil || lbs[0].Spec.Pools[0].HealthCheck.Path != "/health" {
		t.Fatalf("a plain alias: %v", err)
	}
	// An alias inside its own anchor.
	if _, err := specs.Parse([]byte(base+"  routes: &r [*r]\n"), "loop.yaml"); err == nil {
		t.Fatal("a self-referencing alias was accepted")
	}
}

func TestAliasBombFileIsRefused(t *testing.T) {
	_, err := quickly(t, "Load", func() ([]*specs.LoadBalancer, error) { return specs.Load("testdata/alias-bomb.yaml", nil) })
	if err == nil || err.Error() != "testdata/alias-bomb.yaml: YAML aliases expand to more than 100000 nodes" {
		t.Fatalf("got %v", err)
	}
}
