package controller

import (
	"strings"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
)

func TestPlanBackendCerts(t *testing.T) {
	ca, ca2 := testcert.NewCA("A"), testcert.NewCA("B")
	client, client2 := ca.Client("c1"), ca.Client("c2")
	cert := haproxy.BackendFile{Path: "/etc/haproxy/certs/lb.pool-p.client.pem", PEM: client}
	caf := haproxy.BackendFile{Path: "/etc/haproxy/certs/lb.pool-p.ca.pem", CA: true, PEM: ca.PEM}
	files := []haproxy.BackendFile{cert, caf}
	served := func(c, a []byte) map[string]string {
		return map[string]string{
			cert.Path: backendFingerprint(haproxy.BackendFile{PEM: c}),
			caf.Path:  backendFingerprint(haproxy.BackendFile{CA: true, PEM: a}),
		}
	}
	onDisk := map[string][]byte{cert.Path: client, caf.Path: ca.PEM}
	for _, tc := range []struct {
		name        string
		obs         backendObservation
		loaded      bool
		write, swap []string // paths
	}{
		{"in place and served", backendObservation{Files: onDisk, Served: served(client, ca.PEM)}, true, nil, nil},
		{"nothing yet, HAProxy runs another config", backendObservation{}, false, []string{cert.Path, caf.Path}, nil},
		{"rotated client certificate", backendObservation{Files: map[string][]byte{cert.Path: client2, caf.Path: ca.PEM}, Served: served(client2, ca.PEM)}, true,
			[]string{cert.Path}, []string{cert.Path}},
		{"rotated CA", backendObservation{Files: map[string][]byte{cert.Path: client, caf.Path: ca2.PEM}, Served: served(client, ca2.PEM)}, true,
			[]string{caf.Path}, []string{caf.Path}},
		{"file right, HAProxy holds the old one", backendObservation{Files: onDisk, Served: served(client2, ca2.PEM)}, true,
			nil, []string{cert.Path, caf.Path}},
		{"file changed by hand, HAProxy right", backendObservation{Files: map[string][]byte{cert.Path: client2, caf.Path: ca.PEM}, Served: served(client, ca.PEM)}, true,
			[]string{cert.Path}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c certPlan
			planBackendCerts(&c, files, tc.obs, tc.loaded)
			paths := func(fs []haproxy.BackendFile) (out []string) {
				for _, f := range fs {
					out = append(out, f.Path)
				}
				return out
			}
			if got := paths(c.backendWrite); strings.Join(got, " ") != strings.Join(tc.write, " ") {
				t.Errorf("write %v, want %v", got, tc.write)
			}
			if got := paths(c.backendSet); strings.Join(got, " ") != strings.Join(tc.swap, " ") {
				t.Errorf("swap %v, want %v", got, tc.swap)
			}
			if (len(tc.swap) > 0) != c.runtimeChanges() || (len(tc.write)+len(tc.swap) > 0) != c.changes() {
				t.Errorf("runtimeChanges %v, changes %v", c.runtimeChanges(), c.changes())
			}
			c.dropRuntime()
			if len(c.backendSet) > 0 {
				t.Error("a reload keeps runtime swaps")
			}
		})
	}
}

func TestBackendFingerprintOfABundle(t *testing.T) {
	a, b := testcert.NewCA("A"), testcert.NewCA("B")
	one := backendFingerprint(haproxy.BackendFile{CA: true, PEM: a.PEM})
	two := backendFingerprint(haproxy.BackendFile{CA: true, PEM: append(append([]byte{}, a.PEM...), b.PEM...)})
	swapped := backendFingerprint(haproxy.BackendFile{CA: true, PEM: append(append([]byte{}, b.PEM...), a.PEM...)})
	if len(one) != 40 || !strings.Contains(two, one) || len(two) != 81 || swapped != two {
		t.Fatalf("fingerprints %q, %q, swapped %q", one, two, swapped)
	}
}

func TestStagedBackendPath(t *testing.T) {
	cfg := "    default-server ssl verify required ca-file /c/lb.pool-p.ca.pem verifyhost h crt /c/lb.pool-p.client.pem\n" +
		"    default-server crt /c/lb.pool-p.client.pem.x sni str(h)\n"
	got := string(stagedBackendPath([]byte(cfg), "/c/lb.pool-p.client.pem", "/c/tmp1"))
	got = string(stagedBackendPath([]byte(got), "/c/lb.pool-p.ca.pem", "/c/tmp2"))
	want := "    default-server ssl verify required ca-file /c/tmp2 verifyhost h crt /c/tmp1\n" +
		"    default-server crt /c/lb.pool-p.client.pem.x sni str(h)\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
