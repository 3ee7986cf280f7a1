package haproxy

import (
	"context"
	"strings"
	"testing"
)

// recordSocket answers each exchange from answer and records the payloads.
type recordSocket struct {
	sent   []string
	answer func(payload string) string
}

func (s *recordSocket) Exchange(_ context.Context, payload string) (string, error) {
	s.sent = append(s.sent, payload)
	return s.answer(payload), nil
}

func weights(n int) []Weight {
	ws := make([]Weight, n)
	for i := range ws {
		ws[i] = Weight{Backend: "api_pool", Slot: SlotName(i), Weight: i % 257}
	}
	return ws
}

// Weights go weightBatch to an exchange, joined with ';'.
func TestSetWeightsBatches(t *testing.T) {
	s := &recordSocket{answer: func(string) string { return "\n" }}
	if err := (&Runtime{Admin: s}).SetWeights(context.Background(), weights(weightBatch+1)); err != nil {
		t.Fatal(err)
	}
	if len(s.sent) != 2 {
		t.Fatalf("%d exchanges, want 2", len(s.sent))
	}
	if n := strings.Count(s.sent[0], "set server "); n != weightBatch {
		t.Errorf("first exchange holds %d commands, want %d", n, weightBatch)
	}
	if want := "set server api_pool/srv1 weight 0;set server api_pool/srv2 weight 1;"; !strings.HasPrefix(s.sent[0], want) {
		t.Errorf("first exchange %.80q, want it to start with %q", s.sent[0], want)
	}
	if want := "set server api_pool/srv101 weight 100\n"; s.sent[1] != want {
		t.Errorf("second exchange %q, want %q", s.sent[1], want)
	}
}

// A batch HAProxy answers with an error is set again one by one, and the
// error names the command refused.
func TestSetWeightsNamesTheRefused(t *testing.T) {
	s := &recordSocket{answer: func(p string) string {
		if strings.Contains(p, "srv2 ") {
			return "No such server.\n"
		}
		return ""
	}}
	err := (&Runtime{Admin: s}).SetWeights(context.Background(), weights(3))
	if err == nil || !strings.Contains(err.Error(), "set server api_pool/srv2 weight 1: No such server.") {
		t.Fatalf("err = %v", err)
	}
	if len(s.sent) != 3 { // the batch, then srv1 and srv2 on their own
		t.Errorf("%d exchanges, want 3: %q", len(s.sent), s.sent)
	}
}
