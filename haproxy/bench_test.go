package haproxy_test

import (
	"fmt"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
)

func members10k() map[string][]haproxy.Member {
	ms := make([]haproxy.Member, 10000)
	for i := range ms {
		ms[i] = haproxy.Member{Name: fmt.Sprintf("api-%05d", i), Address: fmt.Sprintf("10.%d.%d.%d", 1+i/65536, (i/256)%256, i%256)}
	}
	return map[string][]haproxy.Member{"api": ms}
}

// BenchmarkRender10k renders a config with 10,000 servers in one pool.
func BenchmarkRender10k(b *testing.B) {
	lb := poolLB(16)
	layout := haproxy.Assign(lb, members10k(), nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = haproxy.Render(lb, layout, haproxy.Options{})
	}
}

// BenchmarkAssign10k places 10,000 members into slots they already hold.
func BenchmarkAssign10k(b *testing.B) {
	lb := poolLB(16)
	ms := members10k()
	prev := haproxy.Assign(lb, ms, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = haproxy.Assign(lb, ms, prev)
	}
}
