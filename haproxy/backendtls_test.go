package haproxy_test

import (
	"os"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
)

// TestParseCAFile reads `show ssl ca-file PATH` as HAProxy 2.6.12 answers
// it (testdata/cafile, captured from haproxy 2.6.12-1+deb12u4 with a CA
// file of one certificate, then for a path it does not hold).
func TestParseCAFile(t *testing.T) {
	out, err := os.ReadFile("testdata/cafile/show-ssl-ca-file-2.6.txt")
	if err != nil {
		t.Fatal(err)
	}
	sums, err := haproxy.ParseCAFile(string(out))
	if err != nil || len(sums) != 1 || sums[0] != "FD14E8BC73E25ABDD4044CDAAD025D6F32946DE2" {
		t.Fatalf("got %v, %v", sums, err)
	}
	missing, err := os.ReadFile("testdata/cafile/show-ssl-ca-file-missing-2.6.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := haproxy.ParseCAFile(string(missing)); err == nil {
		t.Fatal("an answer for a CA file HAProxy does not hold parses")
	}
	two := "Filename: /x.pem\nStatus: Used\n \nCertificate #1:\nSHA1 FingerPrint: aa:bb\nCertificate #2:\nSHA1 FingerPrint: CCDD\n"
	if sums, err := haproxy.ParseCAFile(two); err != nil || len(sums) != 2 || sums[0] != "AABB" || sums[1] != "CCDD" {
		t.Fatalf("two certificates: got %v, %v", sums, err)
	}
	for _, junk := range []string{"", "\x00\x01", "Filename:", "SHA1 FingerPrint: x"} {
		_, _ = haproxy.ParseCAFile(junk) // never panics
	}
}
