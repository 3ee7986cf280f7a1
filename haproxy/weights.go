package haproxy

import (
	"context"
	"fmt"
	"strings"
)

// Weight is a server's weight (0 to 256): its share of new sessions among
// its backend's servers. 0 takes no new session but persistent ones (a
// stickiness cookie). The server-state file carries it over a reload.
type Weight struct {
	Backend, Slot string
	Weight        int
}

func (w Weight) command() string {
	return fmt.Sprintf("set server %s/%s weight %d", w.Backend, w.Slot, w.Weight)
}

// weightBatch is how many weights go in one exchange: about 40 bytes
// each, well inside the CLI's request buffer (tune.bufsize, 16 kB).
const weightBatch = 100

// SetWeights sets the weights of several servers, up to weightBatch in
// one exchange ("cmd;cmd;..."): a canary's new split can touch every
// member, and over the exec route each exchange costs a process. HAProxy
// answers nothing to a weight it accepts, so an empty answer means all
// took; otherwise each of that batch is set again on its own (setting a
// weight twice is harmless) so that the error names the one refused.
func (r *Runtime) SetWeights(ctx context.Context, ws []Weight) error {
	for len(ws) > 0 {
		batch := ws[:min(len(ws), weightBatch)]
		ws = ws[len(batch):]
		cmds := make([]string, len(batch))
		for i, w := range batch {
			cmds[i] = w.command()
		}
		out, err := r.Command(ctx, strings.Join(cmds, ";"))
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			continue
		}
		for _, cmd := range cmds {
			if err := r.expectEmpty(ctx, cmd); err != nil {
				return err
			}
		}
	}
	return nil
}
