package haproxy

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The rate limits' tables across a reload. The local peers section hands
// them to the new worker on HAProxy 3.0, but only once the old worker has
// been told to stop, after the new one serves; HAProxy 2.6.12 (Debian 12)
// never does: its old worker does not connect to the local peer. So the
// controller reads each table from the old worker, before the reload and
// again through the master once the new worker runs, and raises the new
// worker's counts to those (CarryRateTables). What the old worker counts
// between the first read and its stop is lost on 2.6 (a stopping 2.6
// worker answers with empty tables): at 50 requests a second, about 5.

// RateEntry is one key of a rate limit's table and its request rate.
type RateEntry struct {
	Key  string
	Rate int
}

// carriedKey is a key that may go back into a runtime command as is: it
// comes from clients (a header, a cookie), and ';' or a space would start
// another command or argument. Others are not carried.
var carriedKey = regexp.MustCompile(`^[A-Za-z0-9._:/+@-]{1,128}$`)

// MaxCarried bounds the keys carried per table: the dump of a larger table
// is cut at MaxAnswer anyway.
const MaxCarried = 20000

// ReadRateTables reads the entries with a non-zero rate of each table from
// the running worker. A table that cannot be read is left out.
func (r *Runtime) ReadRateTables(ctx context.Context, tables []string) map[string][]RateEntry {
	return readRateTables(tables, func(cmd string) (string, error) { return r.Command(ctx, cmd) })
}

// ReadOldRateTables is ReadRateTables from the old worker pid, through the
// master (an old worker that has exited answers nothing).
func (r *Runtime) ReadOldRateTables(ctx context.Context, pid int, tables []string) map[string][]RateEntry {
	return readRateTables(tables, func(cmd string) (string, error) {
		out, err := r.MasterCommand(ctx, fmt.Sprintf("@!%d %s", pid, cmd))
		if err == nil && !strings.HasPrefix(out, "# table:") {
			err = fmt.Errorf("%s", firstLine(out))
		}
		return out, err
	})
}

func readRateTables(tables []string, run func(cmd string) (string, error)) map[string][]RateEntry {
	out := map[string][]RateEntry{}
	for _, t := range tables {
		dump, err := run("show table " + t + " data.http_req_rate gt 0")
		if err != nil {
			continue
		}
		out[t] = ParseRateTable(dump)
	}
	return out
}

// ParseRateTable reads `show table` lines:
//
//	0x55...: key=KEY use=0 exp=59903 [shard=0] http_req_rate(60000)=3
//
// keeping at most MaxCarried entries whose key may be carried.
func ParseRateTable(dump string) []RateEntry {
	var out []RateEntry
	for _, line := range strings.Split(dump, "\n") {
		var e RateEntry
		rate := -1
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "key="):
				e.Key = f[len("key="):]
			case strings.HasPrefix(f, "http_req_rate("):
				if _, v, ok := strings.Cut(f, ")="); ok {
					rate, _ = strconv.Atoi(v)
				}
			}
		}
		if rate > 0 && carriedKey.MatchString(e.Key) {
			e.Rate = rate
			out = append(out, e)
			if len(out) == MaxCarried {
				break
			}
		}
	}
	return out
}

// CarryRateTables raises the running worker's count of each key of old to
// old's, and returns how many keys it set (never lowering one: the local
// peer may have passed on a later count already). Commands go 100
// to an exchange.
func (r *Runtime) CarryRateTables(ctx context.Context, old map[string][]RateEntry) (int, error) {
	set := 0
	for table, entries := range old {
		if len(entries) == 0 {
			continue
		}
		now := map[string]int{}
		for _, e := range r.ReadRateTables(ctx, []string{table})[table] {
			now[e.Key] = e.Rate
		}
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			out, err := r.Command(ctx, strings.Join(batch, ";"))
			if err != nil {
				return err
			}
			if s := strings.TrimSpace(out); s != "" {
				return fmt.Errorf("set table %s: %s", table, firstLine(s))
			}
			set += len(batch)
			batch = batch[:0]
			return nil
		}
		for _, e := range entries {
			if now[e.Key] >= e.Rate {
				continue
			}
			batch = append(batch, fmt.Sprintf("set table %s key %s data.http_req_rate %d", table, e.Key, e.Rate))
			if len(batch) == 100 {
				if err := flush(); err != nil {
					return set, err
				}
			}
		}
		if err := flush(); err != nil {
			return set, err
		}
	}
	return set, nil
}

// MaxRates merges two reads of the same tables, keeping each key's higher
// rate: the old worker read before the reload and once it stopped (a
// stopping worker may already have emptied its tables).
func MaxRates(a, b map[string][]RateEntry) map[string][]RateEntry {
	out := map[string][]RateEntry{}
	for _, table := range slices.Concat(slices.Collect(maps.Keys(a)), slices.Collect(maps.Keys(b))) {
		if _, done := out[table]; done {
			continue
		}
		at := map[string]int{}
		for _, e := range slices.Concat(a[table], b[table]) {
			at[e.Key] = max(at[e.Key], e.Rate)
		}
		out[table] = []RateEntry{}
		for _, k := range slices.Sorted(maps.Keys(at)) {
			out[table] = append(out[table], RateEntry{k, at[k]})
		}
	}
	return out
}
