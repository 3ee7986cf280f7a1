package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
