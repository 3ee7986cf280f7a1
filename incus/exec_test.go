package incus

import (
	"bytes"
	"testing"
)

// A container's output is not trusted to be small: what is kept is capped,
// and the excess is noted, not buffered.
func TestCappedBufferKeepsAtMostMax(t *testing.T) {
	b := &cappedBuffer{max: 10}
	for i := 0; i < 5; i++ {
		if n, err := b.Write(bytes.Repeat([]byte("x"), 4)); n != 4 || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if b.Len() != 10 || !b.over {
		t.Fatalf("kept %d, over %v", b.Len(), b.over)
	}
}
