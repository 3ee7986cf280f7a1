package incus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/pkg/sftp"
)

// FileMode is the owner and permissions of a file written into an instance.
// It is always given explicitly: the client's zero values mean root and 0000.
type FileMode struct {
	UID, GID int64
	Mode     int
}

// MaxFileRead caps what is read of a file in an instance: what a container
// holds is not trusted to be small.
const MaxFileRead = 4 << 20

// ReadFile returns the content of a file in an instance, or an error
// wrapping ErrNotFound. A file larger than MaxFileRead is an error, and no
// more than that is read.
func (c *Client) ReadFile(ctx context.Context, project, name, file string) ([]byte, error) {
	// The whole read runs apart: the client's request ignores ctx.
	data, err := untilDone(ctx, func() ([]byte, error) {
		rc, _, err := c.in(ctx, project).GetInstanceFile(name, file)
		if err != nil {
			return nil, notFound(err)
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, MaxFileRead+1))
		if err != nil {
			return nil, fmt.Errorf("reading %s in %s: %w", file, name, err)
		}
		return data, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileRead {
		return nil, fmt.Errorf("%s in %s is larger than %d bytes: not read", file, name, MaxFileRead)
	}
	return data, nil
}

// WriteFile writes data to file in an instance atomically: it is written
// under a temporary name in the same directory, with the given owner and
// mode, then renamed over file, so no reader ever sees half of it.
func (c *Client) WriteFile(ctx context.Context, project, name, file string, data []byte, mode FileMode) error {
	tmp, err := c.WriteTemp(ctx, project, name, file, data, mode)
	if err != nil {
		return err
	}
	return c.Rename(ctx, project, name, tmp, file)
}

// WriteTemp writes data under a fresh temporary name beside file and
// returns that name; the caller validates it, then Renames or Removes it.
func (c *Client) WriteTemp(ctx context.Context, project, name, file string, data []byte, mode FileMode) (string, error) {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := path.Join(path.Dir(file), "."+path.Base(file)+".incuslb-"+hex.EncodeToString(suffix[:]))
	// A new name, so the owner and mode apply: Incus keeps those of an
	// existing file it overwrites.
	// A write that lands after ctx ended leaves a stray temporary file in
	// an instance on a lost member: the price of not waiting on it.
	_, err := untilDone(ctx, func() (struct{}, error) {
		return struct{}{}, c.in(ctx, project).CreateInstanceFile(name, tmp, incusclient.InstanceFileArgs{
			Content:   bytes.NewReader(data),
			UID:       mode.UID,
			GID:       mode.GID,
			Mode:      mode.Mode,
			Type:      "file",
			WriteMode: "overwrite",
		})
	}, nil)
	if err != nil {
		return "", fmt.Errorf("writing %s in %s: %w", tmp, name, notFound(err))
	}
	return tmp, nil
}

// Mkdir creates a directory (one level) unless it exists.
func (c *Client) Mkdir(ctx context.Context, project, name, dir string, mode FileMode) error {
	_, err := untilDone(ctx, func() (struct{}, error) {
		return struct{}{}, c.in(ctx, project).CreateInstanceFile(name, dir, incusclient.InstanceFileArgs{
			Type: "directory", UID: mode.UID, GID: mode.GID, Mode: mode.Mode,
		})
	}, nil)
	if err != nil {
		return fmt.Errorf("creating %s in %s: %w", dir, name, notFound(err))
	}
	return nil
}

// Rename renames a file in an instance atomically, replacing the target.
// The SFTP session is a hijacked connection that ignores ctx: it is
// closed when ctx ends, which ends a call stuck on a member that died.
func (c *Client) Rename(ctx context.Context, project, name, from, to string) error {
	var (
		mu     sync.Mutex
		sc     *sftp.Client
		closed bool
	)
	done := make(chan error, 1)
	go func() {
		s, err := c.in(ctx, project).GetInstanceFileSFTP(name)
		if err != nil {
			done <- fmt.Errorf("opening files of %s: %w", name, notFound(err))
			return
		}
		defer s.Close()
		mu.Lock()
		sc = s
		late := closed
		mu.Unlock()
		if late {
			done <- ctx.Err()
			return
		}
		if err := s.PosixRename(from, to); err != nil {
			done <- fmt.Errorf("renaming %s to %s in %s: %w", from, to, name, err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		mu.Lock()
		closed = true
		if sc != nil {
			_ = sc.Close()
		}
		mu.Unlock()
		return fmt.Errorf("renaming %s to %s in %s: %w", from, to, name, ctx.Err())
	}
}

// Remove deletes a file in an instance; a missing file is not an error.
func (c *Client) Remove(ctx context.Context, project, name, file string) error {
	err := notFound(c.in(ctx, project).DeleteInstanceFile(name, file))
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s in %s: %w", file, name, err)
	}
	return nil
}
