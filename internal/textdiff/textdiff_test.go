package textdiff

import "testing"

func TestUnified(t *testing.T) {
	a := []byte("global\n    a\n    b\n    c\n    d\n    e\n    f\n    g\n    h\n")
	b := []byte("global\n    a\n    b\n    c\n    D\n    e\n    f\n    g\n    h\n    i\n")
	want := `--- running
+++ desired
@@ -2,8 +2,9 @@
     a
     b
     c
-    d
+    D
     e
     f
     g
     h
+    i
`
	if got := Unified("running", "desired", a, b); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if Unified("a", "b", a, a) != "" {
		t.Fatal("equal inputs must give no diff")
	}
	if got := Unified("a", "b", nil, []byte("x\n")); got != "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+x\n" {
		t.Fatalf("from empty: %q", got)
	}
}
