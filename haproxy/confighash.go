package haproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/incuslb/incuslb/specs"
)

// HashVar is the environment variable every config incuslb renders sets in
// its global section (`setenv`), to the config's own hash. HAProxy's
// current worker answers it to `show env`, so a pass learns which config
// HAProxy actually loaded, whatever the file on disk says.
const HashVar = "INCUSLB_CONFIG_HASH"

// hashLinePrefix starts the setenv line in the global section.
const hashLinePrefix = "    setenv " + HashVar + " "

// hashPlaceholder stands for the hash while a config is rendered.
const hashPlaceholder = "@@INCUSLB_CONFIG_HASH@@"

// ConfigHash is the hash a config carries: over its structure (see
// Structure: every slot line of the selector pools blanked out, since
// membership changes through the runtime API without a reload) with the
// value of its own setenv line left out. Two configs with the same hash
// differ only in which members sit in which slots.
func ConfigHash(cfg []byte, pools map[string]bool) string {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(cfg, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(hashLinePrefix)) {
			b.WriteString(hashLinePrefix + "\n")
			continue
		}
		b.Write(line)
	}
	sum := sha256.Sum256(Structure(b.Bytes(), pools))
	return hex.EncodeToString(sum[:8])
}

// ClaimedHash is the hash a config's setenv line claims, or "" when it has
// none (a config incuslb did not write).
func ClaimedHash(cfg []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), hashLinePrefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// SelectorPools names the pools whose servers are slots filled at run time.
func SelectorPools(lb *specs.LoadBalancer) map[string]bool {
	out := map[string]bool{}
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) > 0 {
			out[p.Name] = true
		}
	}
	return out
}

// sealHash replaces the placeholder of a rendered config by its hash.
func sealHash(cfg []byte, pools map[string]bool) []byte {
	return bytes.Replace(cfg, []byte(hashPlaceholder), []byte(ConfigHash(cfg, pools)), 1)
}
