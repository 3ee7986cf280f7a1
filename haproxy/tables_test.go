package haproxy

import (
	"reflect"
	"testing"
)

func TestParseRateTable(t *testing.T) {
	for _, tc := range []struct {
		name, dump string
		want       []RateEntry
	}{
		{"2.6", "# table: rl_route_0, type: string, size:1048576, used:2\n" +
			"0x5564e0cac810: key=c use=0 exp=59958 http_req_rate(60000)=3\n" +
			"0x5564e0cac811: key=d use=0 exp=59958 http_req_rate(60000)=0\n\n",
			[]RateEntry{{"c", 3}}},
		{"3.0 with shard", "# table: rl, type: ip\n0x7f: key=::ffff:10.77.0.1 use=0 exp=59928 shard=0 http_req_rate(10000)=27\n",
			[]RateEntry{{"::ffff:10.77.0.1", 27}}},
		{"keys that could start another command are left out",
			"0x1: key=a;shutdown use=0 exp=1 http_req_rate(1000)=5\n0x2: key=b\\x20c use=0 exp=1 http_req_rate(1000)=5\n0x3: key=Bearer.tok-en_1 use=0 exp=1 http_req_rate(1000)=9\n",
			[]RateEntry{{"Bearer.tok-en_1", 9}}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseRateTable(tc.dump); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMaxRates(t *testing.T) {
	before := map[string][]RateEntry{"t": {{"a", 5}, {"b", 9}}}
	stopped := map[string][]RateEntry{"t": {{"a", 7}}, "u": {{"z", 1}}}
	want := map[string][]RateEntry{"t": {{"a", 7}, {"b", 9}}, "u": {{"z", 1}}}
	if got := MaxRates(before, stopped); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// A CA set is the same whatever the order and repeats HAProxy or the file
// list its certificates in.
func TestCASet(t *testing.T) {
	if a, b := CASet([]string{"BB", "AA", "BB"}), CASet([]string{"AA", "BB"}); a != b || a != "AA,BB" {
		t.Errorf("CASet: %q and %q, want AA,BB for both", a, b)
	}
}
