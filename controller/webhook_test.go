package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhook(t *testing.T) {
	var triggered []string
	h := &Webhook{Secret: []byte("s3cret"), Branch: "main", Log: logr.Discard(),
		Trigger: func(r string) { triggered = append(triggered, r) }}
	push := `{"ref":"refs/heads/main","after":"abc123"}`
	cases := []struct {
		name    string
		body    string
		headers map[string]string
		code    int
		status  string
		trigger bool
	}{
		{"github signature", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("s3cret", push), "X-GitHub-Delivery": "d1"}, 202, "accepted", true},
		{"repeated delivery", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("s3cret", push), "X-GitHub-Delivery": "d1"}, 202, "ignored", false},
		{"forgejo bare hex", push, map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Signature": sign("s3cret", push), "X-Forgejo-Delivery": "d2"}, 202, "accepted", true},
		{"gitea bare hex", push, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("s3cret", push)}, 202, "accepted", true},
		{"wrong secret", push, map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Signature": sign("other", push)}, 401, "rejected", false},
		{"no signature", push, map[string]string{"X-Forgejo-Event": "push"}, 401, "rejected", false},
		{"signature of another body", push, map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Signature": sign("s3cret", push+" ")}, 401, "rejected", false},
		{"not a push", `{}`, map[string]string{"X-Gitea-Event": "issues", "X-Gitea-Signature": sign("s3cret", `{}`)}, 202, "ignored", false},
		{"another branch", `{"ref":"refs/heads/dev"}`, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("s3cret", `{"ref":"refs/heads/dev"}`)}, 202, "ignored", false},
		{"too big", strings.Repeat("x", maxWebhookBody+1), map[string]string{"X-Gitea-Event": "push"}, 413, "rejected", false},
	}
	for _, tc := range cases {
		before := len(triggered)
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(tc.body))
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), `"status":"`+tc.status+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, rec.Code, rec.Body.String(), tc.code, tc.status)
		}
		if (len(triggered) > before) != tc.trigger {
			t.Errorf("%s: triggered=%v, want %v", tc.name, len(triggered) > before, tc.trigger)
		}
	}
}

func signedPush(t *testing.T, h *Webhook, body, id string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Forgejo-Event", "push")
	req.Header.Set("X-Forgejo-Signature", sign(string(h.Secret), body))
	req.Header.Set("X-Forgejo-Delivery", id)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebhookRemembersBoundedDeliveries(t *testing.T) {
	triggers := 0
	h := &Webhook{Secret: []byte("s3cret"), Branch: "main", Log: logr.Discard(), Trigger: func(string) { triggers++ }}
	push := `{"ref":"refs/heads/main"}`
	long := strings.Repeat("x", maxDeliveryID+1)
	for range 3 {
		if rec := signedPush(t, h, push, long); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "delivery id over 128 bytes") {
			t.Fatalf("an id of %d bytes: %d %s, want 400", len(long), rec.Code, rec.Body.String())
		}
	}
	if triggers != 0 || len(h.seen) != 0 {
		t.Fatalf("an over-long id triggered %d fetches and was remembered (%d ids)", triggers, len(h.seen))
	}
	if rec := signedPush(t, h, push, strings.Repeat("y", maxDeliveryID)); rec.Code != http.StatusAccepted {
		t.Fatalf("an id of %d bytes: %d, want 202", maxDeliveryID, rec.Code)
	}
	for i := range 3 * maxDeliveries {
		if rec := signedPush(t, h, push, fmt.Sprintf("%0128d", i)); rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), "accepted") {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body.String())
		}
	}
	if len(h.seen) != maxDeliveries || len(h.ids) != maxDeliveries || cap(h.ids) != maxDeliveries {
		t.Fatalf("remembers %d ids in a ring of %d (cap %d), want %d", len(h.seen), len(h.ids), cap(h.ids), maxDeliveries)
	}
	bytes := 0
	for id := range h.seen {
		bytes += len(id)
	}
	if bytes > maxDeliveries*maxDeliveryID {
		t.Fatalf("remembers %d bytes of ids", bytes)
	}
	// The latest are still refused as repeats; the oldest are forgotten.
	if rec := signedPush(t, h, push, fmt.Sprintf("%0128d", 3*maxDeliveries-1)); !strings.Contains(rec.Body.String(), "already accepted") {
		t.Fatalf("a repeat of the last delivery: %s", rec.Body.String())
	}
	if rec := signedPush(t, h, push, fmt.Sprintf("%0128d", 0)); !strings.Contains(rec.Body.String(), `"accepted"`) {
		t.Fatalf("a repeat of a forgotten delivery: %s", rec.Body.String())
	}
}

func TestWebhookTriggerReasonIsBounded(t *testing.T) {
	var reasons []string
	h := &Webhook{Secret: []byte("s3cret"), Branch: "main", Log: logr.Discard(), Trigger: func(r string) { reasons = append(reasons, r) }}
	sha := strings.Repeat("ab", 20)
	signedPush(t, h, `{"ref":"refs/heads/main","after":"`+sha+`"}`, "1")
	signedPush(t, h, `{"ref":"refs/heads/main","after":"`+strings.Repeat("z", 100000)+`"}`, "2")
	signedPush(t, h, `{"ref":"refs/heads/main","after":"abc\n{\"level\":\"forged\"}"}`, "3")
	want := []string{"webhook push " + sha, "webhook push", "webhook push"}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("trigger reasons %.200q, want %q", reasons, want)
	}
}
