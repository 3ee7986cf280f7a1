package acme

import (
	"testing"
	"time"
)

// TestNextRenewal checks the schedule with a fixed clock.
func TestNextRenewal(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cert := func(lifetime time.Duration) *Certificate {
		return &Certificate{Serial: "04d2", NotBefore: t0, NotAfter: t0.Add(lifetime)}
	}
	window := &RenewalWindow{Start: t0.Add(50 * day), End: t0.Add(52 * day)}

	tests := []struct {
		name string
		cert *Certificate
		now  time.Time
		ari  *RenewalWindow
		want time.Time // zero: check "inside ari" instead
	}{
		{"90-day certificate: day 60", cert(90 * day), t0, nil, t0.Add(60 * day)},
		{"6-day short-lived certificate: day 4", cert(6 * day), t0, nil, t0.Add(4 * day)},
		{"now past the renewal time: now", cert(90 * day), t0.Add(70 * day), nil, t0.Add(70 * day)},
		{"expired: now", cert(6 * day), t0.Add(10 * day), nil, t0.Add(10 * day)},
		{"ARI window ahead: inside it", cert(90 * day), t0, window, time.Time{}},
		{"ARI window past: now", cert(90 * day), t0.Add(60 * day), window, t0.Add(60 * day)},
		{"ARI window earlier than 2/3: inside it", cert(90 * day), t0,
			&RenewalWindow{Start: t0.Add(day), End: t0.Add(2 * day)}, time.Time{}},
		{"empty ARI window: ignored", cert(90 * day), t0,
			&RenewalWindow{Start: t0.Add(day), End: t0.Add(day)}, t0.Add(60 * day)},
		{"no certificate: now", nil, t0, nil, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NextRenewal(tt.cert, tt.now, tt.ari)
			if got.Before(tt.now) {
				t.Fatalf("NextRenewal = %v, before now %v", got, tt.now)
			}
			if !tt.want.IsZero() {
				if !got.Equal(tt.want) {
					t.Fatalf("NextRenewal = %v, want %v", got, tt.want)
				}
				return
			}
			if got.Before(tt.ari.Start) || !got.Before(tt.ari.End) {
				t.Fatalf("NextRenewal = %v, not inside [%v, %v)", got, tt.ari.Start, tt.ari.End)
			}
			if again := NextRenewal(tt.cert, tt.now, tt.ari); !again.Equal(got) {
				t.Fatalf("NextRenewal not deterministic: %v then %v", got, again)
			}
		})
	}
}

// TestNextRenewalSpread checks that different serials land at different
// points of one ARI window, not all at its start.
func TestNextRenewalSpread(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &RenewalWindow{Start: t0, End: t0.Add(48 * time.Hour)}
	seen := map[time.Time]bool{}
	for _, serial := range []string{"1", "2", "3", "4", "5", "6", "7", "8"} {
		c := &Certificate{Serial: serial, NotBefore: t0, NotAfter: t0.Add(90 * 24 * time.Hour)}
		seen[NextRenewal(c, t0, w)] = true
	}
	if len(seen) < 6 {
		t.Fatalf("8 serials gave only %d distinct renewal times", len(seen))
	}
}
