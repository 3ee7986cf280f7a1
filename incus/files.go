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

	incusclient "github.com/lxc/incus/v6/client"
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
	rc, _, err := c.in(ctx, project).GetInstanceFile(name, file)
	if err != nil {
		return nil, notFound(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxFileRead+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s in %s: %w", file, name, err)
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
	err := c.in(ctx, project).CreateInstanceFile(name, tmp, incusclient.InstanceFileArgs{
		Content:   bytes.NewReader(data),
		UID:       mode.UID,
		GID:       mode.GID,
		Mode:      mode.Mode,
		Type:      "file",
		WriteMode: "overwrite",
	})
	if err != nil {
		return "", fmt.Errorf("writing %s in %s: %w", tmp, name, notFound(err))
	}
	return tmp, nil
}

// Mkdir creates a directory (one level) unless it exists.
func (c *Client) Mkdir(ctx context.Context, project, name, dir string, mode FileMode) error {
	err := c.in(ctx, project).CreateInstanceFile(name, dir, incusclient.InstanceFileArgs{
		Type: "directory", UID: mode.UID, GID: mode.GID, Mode: mode.Mode,
	})
	if err != nil {
		return fmt.Errorf("creating %s in %s: %w", dir, name, notFound(err))
	}
	return nil
}

// Rename renames a file in an instance atomically, replacing the target.
func (c *Client) Rename(ctx context.Context, project, name, from, to string) error {
	sc, err := c.in(ctx, project).GetInstanceFileSFTP(name)
	if err != nil {
		return fmt.Errorf("opening files of %s: %w", name, notFound(err))
	}
	defer sc.Close()
	if err := sc.PosixRename(from, to); err != nil {
		return fmt.Errorf("renaming %s to %s in %s: %w", from, to, name, err)
	}
	return nil
}

// Remove deletes a file in an instance; a missing file is not an error.
func (c *Client) Remove(ctx context.Context, project, name, file string) error {
	err := notFound(c.in(ctx, project).DeleteInstanceFile(name, file))
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s in %s: %w", file, name, err)
	}
	return nil
}
