package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incuslb/incuslb/internal/testcert"
)

// runCLI runs the program as main would and returns the exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	code := exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

// TestValidateRejectsBrokenSpecs runs validate on each testdata/invalid file
// and checks the exit code and that the error names the path the file's
// "# want:" line gives. Validation reads but never writes, so it changes
// nothing; the files are checked to be unchanged too.
func TestValidateRejectsBrokenSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 12 {
		t.Fatalf("only %d broken specs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			before, _ := os.ReadFile(f)
			first, _, _ := strings.Cut(string(before), "\n")
			want := strings.TrimPrefix(first, "# want: ")
			code, _, stderr := runCLI(t, "", "validate", "-f", f)
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitInvalid, stderr)
			}
			if !strings.Contains(stderr, f+": "+want+": ") {
				t.Fatalf("stderr does not name %s:\n%s", want, stderr)
			}
			after, _ := os.ReadFile(f)
			if !bytes.Equal(before, after) {
				t.Fatal("validate changed its input")
			}
		})
	}
}

func TestValidateAcceptsExamplesAndStdin(t *testing.T) {
	code, out, stderr := runCLI(t, "", "validate", "--skip-files", "-f", "../../specs/examples")
	if code != exitOK || !strings.Contains(out, `LoadBalancer "edge" is valid`) {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	dir := t.TempDir()
	cert := testcert.Write(dir, "edge.pem", "edge.example.org")
	spec, _ := os.ReadFile("../../specs/examples/edge.yaml")
	withCert := strings.Replace(string(spec), "/etc/incuslb/edge.pem", cert, 1)
	code, out, stderr = runCLI(t, withCert, "validate", "--cert-root", dir, "-f", "-")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	// Without --cert-root, stdin's root is the current directory: refused.
	code, _, stderr = runCLI(t, withCert, "validate", "-f", "-")
	if code != exitInvalid || !strings.Contains(stderr, "spec.frontend.tls.certificateFile: certificate file "+cert+" is outside the certificate root") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}

// TestRenderShowsEverySeedDirective renders the seed example and looks for
// every directive the seed role's HAProxy had.
func TestRenderShowsEverySeedDirective(t *testing.T) {
	code, out, stderr := runCLI(t, "", "render", "-f", "../../specs/examples/edge.yaml",
		"--members", "../../specs/examples/members/edge.yaml")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"    master-worker\n",
		"    log /dev/log local0\n",
		"    stats socket /run/haproxy/admin.sock mode 660 level admin",
		"    bind 127.0.0.1:9100\n",
		"    http-request use-service prometheus-exporter if { path /metrics }\n",
		"    bind :80\n",
		"    bind :443 ssl crt-list /etc/haproxy/certs/edge.crt-list",
		"    http-request redirect scheme https code 301 unless { ssl_fc }\n",
		"    use_backend forgejo if { req.hdr(host),field(1,:),lower -m str forgejo.example.org }\n",
		"    use_backend stream_pool if { path_beg /stream/ }\n",
		"    default_backend api_pool\n",
		"    balance roundrobin\n",
		"    cookie VEZA_SERVERID insert indirect nocache dynamic\n",
		"    dynamic-cookie-key ",
		"    balance uri whole\n    hash-type consistent\n",
		"    option httpchk\n",
		"    http-check send meth GET uri /api/v1/health ver HTTP/1.1 hdr Host localhost\n",
		"    http-check send meth GET uri / ver HTTP/1.1 hdr Host forgejo.example.org\n",
		"    http-check expect rstatus ^[23]\n",
		"inter 5s downinter 250ms fall 3 rise 2 slowstart 30s on-marked-down shutdown-sessions",
		"ssl verify none sni str(forgejo.example.org)",
		"    timeout tunnel 1h\n",
		"    server srv1 10.77.0.11:8080 check # backend-api-1\n",
		"    server srv3 127.0.0.1:1 check disabled\n",
		"    server forgejo 10.0.20.105:3000 check\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q", want)
		}
	}
	// The admin socket is a unix path and stats listen on loopback only.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "stats socket") && !strings.Contains(line, "stats socket /") {
			t.Errorf("admin socket is not a unix path: %s", line)
		}
	}
}

func TestRenderRejectsHostileMembers(t *testing.T) {
	dir := t.TempDir()
	members := filepath.Join(dir, "m.yaml")
	os.WriteFile(members, []byte("api_pool:\n  - {name: x, address: \"10.0.0.1 backup\"}\nforgejo:\n  - {name: y, address: 10.0.0.2}\n"), 0o644)
	code, _, stderr := runCLI(t, "", "render", "-f", "../../specs/examples/edge.yaml", "--members", members)
	if code != exitInvalid || !strings.Contains(stderr, "api_pool[0]: address must be an IPv4 or IPv6 address") ||
		!strings.Contains(stderr, "forgejo: is not a selector pool") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"validate"}, exitUsage},
		{[]string{"validate", "-x"}, exitUsage},
		{[]string{"validate", "-f", "a", "extra"}, exitUsage},
		{[]string{"validate", "-h"}, exitOK},
		{[]string{"render", "-h"}, exitOK},
		{[]string{"version", "-h"}, exitOK},
		{[]string{"maintenance", "-h"}, exitOK},
		{[]string{"maintenance"}, exitUsage},
		{[]string{"maintenance", "maybe", "lb-1"}, exitUsage},
		{[]string{"maintenance", "on"}, exitUsage},
		{[]string{"maintenance", "on", "lb-1", "extra"}, exitUsage},
		{[]string{"help"}, exitOK},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != tc.code {
			t.Errorf("incuslb %v: exit %d, want %d\n%s", tc.args, code, tc.code, stderr)
		}
	}
	code, out, _ := runCLI(t, "", "version")
	if code != exitOK || !strings.HasPrefix(out, "incuslb ") {
		t.Errorf("version: %d %q", code, out)
	}
}
