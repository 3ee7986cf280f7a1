package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/go-logr/logr"
)

// maxWebhookBody bounds a webhook request body.
const maxWebhookBody = 1 << 20

// Webhook receives push events from Forgejo, Gitea or GitHub. A valid push
// to the watched branch calls Trigger and is answered 202 at once; the
// fetch and apply run elsewhere. A repeated delivery id is ignored; a
// delivery id over 128 bytes is refused (400).
type Webhook struct {
	// Secret signs the deliveries (HMAC-SHA256 over the raw body). Nil
	// accepts unsigned deliveries (--webhook-insecure).
	Secret  []byte
	Branch  string
	Trigger func(reason string) // must not block
	Log     logr.Logger

	mu   sync.Mutex
	seen map[string]struct{} // delivery ids accepted lately
	ids  []string            // the same, a ring of maxDeliveries: ids[next] is forgotten next
	next int
}

// What is remembered of the deliveries is bounded: the last maxDeliveries
// ids, each at most maxDeliveryID bytes (about 128 KiB in all). Forges send
// a UUID; a longer id is refused (400), never stored.
const (
	maxDeliveries = 1024
	maxDeliveryID = 128
)

type webhookAnswer struct {
	Status string `json:"status"` // accepted, ignored, rejected
	Reason string `json:"reason,omitempty"`
}

func answer(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(webhookAnswer{Status: status, Reason: reason})
}

// ServeHTTP implements POST /hooks/git.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, "rejected", "POST only")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			answer(w, http.StatusRequestEntityTooLarge, "rejected", "body over 1 MiB")
			return
		}
		answer(w, http.StatusBadRequest, "rejected", "reading the body: "+err.Error())
		return
	}
	if h.Secret != nil {
		if reason := h.verify(r.Header, body); reason != "" {
			h.Log.Info("webhook rejected", "reason", reason, "remote", r.RemoteAddr)
			answer(w, http.StatusUnauthorized, "rejected", reason)
			return
		}
	}
	id := firstHeader(r.Header, "X-Forgejo-Delivery", "X-Gitea-Delivery", "X-GitHub-Delivery")
	if len(id) > maxDeliveryID {
		answer(w, http.StatusBadRequest, "rejected", fmt.Sprintf("delivery id over %d bytes", maxDeliveryID))
		return
	}
	event := firstHeader(r.Header, "X-Forgejo-Event", "X-Gitea-Event", "X-GitHub-Event", "X-Gogs-Event")
	if event != "push" {
		answer(w, http.StatusAccepted, "ignored", "event "+quoteOr(event, "without a type")+" is not a push")
		return
	}
	var push struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		answer(w, http.StatusBadRequest, "rejected", "the push payload is not JSON with a ref")
		return
	}
	if want := "refs/heads/" + h.Branch; push.Ref != want {
		answer(w, http.StatusAccepted, "ignored", "push to "+quoteOr(push.Ref, "no ref")+", watching "+want)
		return
	}
	if id != "" && !h.remember(id) {
		answer(w, http.StatusAccepted, "ignored", "delivery "+id+" was already accepted")
		return
	}
	reason := "webhook push"
	if isObjectName(push.After) { // anything else is not logged
		reason += " " + push.After
	}
	h.Trigger(reason)
	answer(w, http.StatusAccepted, "accepted", "fetching "+h.Branch)
}

// verify checks the delivery's signature in constant time and returns why
// it is refused, or "".
func (h *Webhook) verify(hdr http.Header, body []byte) string {
	sig := hdr.Get("X-Hub-Signature-256")
	if sig != "" {
		if !strings.HasPrefix(sig, "sha256=") {
			return "X-Hub-Signature-256 is not sha256=<hex>"
		}
		sig = strings.TrimPrefix(sig, "sha256=")
	} else {
		sig = firstHeader(hdr, "X-Forgejo-Signature", "X-Gitea-Signature")
	}
	if sig == "" {
		return "missing signature (X-Hub-Signature-256, X-Forgejo-Signature or X-Gitea-Signature)"
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return "the signature is not hex"
	}
	mac := hmac.New(sha256.New, h.Secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return "bad signature"
	}
	return ""
}

// remember records a delivery id and reports whether it is new. The
// oldest of maxDeliveries ids is forgotten.
func (h *Webhook) remember(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = make(map[string]struct{}, maxDeliveries)
		h.ids = make([]string, maxDeliveries)
	}
	if _, ok := h.seen[id]; ok {
		return false
	}
	if old := h.ids[h.next]; old != "" {
		delete(h.seen, old)
	}
	h.seen[id] = struct{}{}
	h.ids[h.next] = id
	h.next = (h.next + 1) % maxDeliveries
	return true
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func quoteOr(s, empty string) string {
	if s == "" {
		return empty
	}
	return `"` + s + `"`
}
