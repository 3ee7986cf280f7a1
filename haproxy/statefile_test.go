package haproxy_test

import (
	"strings"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
)

func TestStateFileCarriesWhatKeepsItsPlace(t *testing.T) {
	show := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port
3 api 1 srv1 10.0.0.11 2 0 1 1 40 6 3 4 6 0 0 0 - 8080
3 api 2 srv2 10.0.0.12 0 0 1 1 3 7 2 0 6 0 0 0 - 8080
3 api 3 srv3 10.0.0.13 2 8 1 1 9 6 3 4 6 0 0 0 - 8080
3 api 4 srv4 127.0.0.1 0 5 1 1 50 1 0 0 14 0 0 0 - 1
3 api 5 srv5 127.0.0.1 0 5 1 1 50 1 0 0 14 0 0 0 - 1
3 api 6 srv6 10.0.0.16 2 0 1 1 50 6 3 4 6 0 0 0 - 8080
4 web 1 srv1 10.0.1.1 2 0 1 1 50 6 3 4 6 0 0 0 - 80
4 web 2 web-static 10.0.1.9 2 0 1 1 50 6 3 4 6 0 0 0 - 80
`
	layout := haproxy.Layout{"api": {
		{Member: "a1", Address: "10.0.0.11", Port: 8080}, // same endpoint: carried (UP)
		{Member: "a2", Address: "10.0.0.12", Port: 8080}, // same endpoint: carried (DOWN, health 0)
		{Member: "a4", Address: "10.0.0.14", Port: 8080}, // another member: config state
		{}, // parked, was parked: carried
		{Member: "a5", Address: "10.0.0.15", Port: 8080}, // joins a parked slot: config state
	}}
	got := string(haproxy.StateFile(show, layout, map[string]bool{"api/2": true}))
	for _, c := range []struct {
		row  string
		kept bool
	}{
		{" api 1 srv1 ", true}, {" api 2 srv2 ", true}, {" api 3 srv3 ", true}, // srv3 drains
		{" api 4 srv4 ", false}, {" api 5 srv5 ", false}, {" api 6 srv6 ", false}, // srv6 is past the layout
		{" web 1 srv1 ", false}, {"web-static", false},
	} {
		if strings.Contains(got, c.row) != c.kept {
			t.Errorf("row %q kept=%v, want %v:\n%s", c.row, !c.kept, c.kept, got)
		}
	}
	if !strings.HasPrefix(got, "1\n# be_id be_name") {
		t.Errorf("no version line and header:\n%s", got)
	}
}
