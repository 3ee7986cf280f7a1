package haproxy

import (
	"os"
	"testing"
)

func TestParseShowSess(t *testing.T) {
	out := "0x559db59feea0: proto=tcpv4 src=10.77.0.1:41234 fe=main be=api_pool srv=srv3 ts=00 epoch=0 age=12s calls=4 rate=0\n" +
		"0x559db5a00000: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<NONE> ts=02 age=0s\n" +
		"garbage line\n0xzz: be=x srv=y\n"
	got := ParseShowSess(out)
	if len(got) != 2 || got[0] != (Session{ID: "0x559db59feea0", Backend: "api_pool", Server: "srv3"}) || got[1].Server != "" {
		t.Fatalf("%+v", got)
	}
}

// The CLI's own stream, as HAProxy 2.6 and 3.0 list it: no backend, no
// server (2.6 and 3.0 both write "be=<NONE> srv=<none>").
func TestParseShowSessVersions(t *testing.T) {
	for _, v := range []string{"2.6", "3.0"} {
		out, err := os.ReadFile("testdata/runtime/" + v + "/show-sess.txt")
		if err != nil {
			t.Fatal(err)
		}
		got := ParseShowSess(string(out))
		if len(got) != 1 || got[0].Backend != "" || got[0].Server != "" || len(got[0].ID) < 3 {
			t.Fatalf("%s: %+v", v, got)
		}
	}
}
