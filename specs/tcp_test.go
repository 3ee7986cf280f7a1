package specs_test

import (
	"strings"
	"testing"
)

// TestTCP: TCP listeners and tcp pools, each bad value at its path.
func TestTCP(t *testing.T) {
	tcp := func(listeners, pool string) string {
		in := strings.Replace(base, "  pools:\n", "  tcp: "+listeners+"\n  pools:\n", 1)
		return in + "    - {name: ssh, mode: tcp, servers: [{name: s, address: '10.0.0.5:22'}]" + pool + "}\n"
	}
	cases := []errCase{
		{"good", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", tcpCheck: {expect: SSH-2.0}, proxyProtocol: v2"), ""},
		{"http pool", tcp("[{name: ssh, port: 2222, pool: api_pool}]", ""), `spec.tcp[0].pool: pool "api_pool" has mode http; a TCP listener needs a pool with mode: tcp`},
		{"port taken", tcp("[{name: ssh, port: 80, pool: ssh}]", ""), "spec.tcp[0].port: port 80 is already used by spec.frontend.httpPort"},
		{"sticky", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", sticky: {cookie: X}"), "spec.pools[1].sticky: needs mode: http"},
		{"proxy", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", proxyProtocol: v3"), `spec.pools[1].proxyProtocol: must be v1 or v2, not "v3"`},
		{"expect", tcp("[{name: ssh, port: 2222, pool: ssh}]", `, tcpCheck: {expect: 'a"b'}`), "spec.pools[1].tcpCheck.expect: must be 1 to 256 printable ASCII"},
		{"check path", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", healthCheck: {path: /health, interval: 2s}"), "spec.pools[1].healthCheck.path: is for mode: http pools"},
		{"check status", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", healthCheck: {expectStatus: '^2'}"), "spec.pools[1].healthCheck.expectStatus: is for mode: http pools"},
		{"check timing", tcp("[{name: ssh, port: 2222, pool: ssh}]", ", healthCheck: {interval: 2s, fall: 2}"), ""},
		{"route to tcp", strings.Replace(tcp("[]", ""), "    - pool: api_pool\n", "    - pool: ssh\n", 1), `spec.routes[0].pool: pool "ssh" has mode: tcp`},
		{"mode", strings.Replace(base, "      port: 8080\n", "      port: 8080\n      mode: udp\n", 1), `spec.pools[0].mode: must be http or tcp, not "udp"`},
	}
	checkErrCases(t, cases)
}
