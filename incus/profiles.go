package incus

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lxc/incus/v6/shared/api"
)

// ErrConflict is a compare-and-swap write that lost: the object changed
// since it was read (Incus answers 412 to a stale If-Match ETag), or a
// create found it already there (409).
var ErrConflict = errors.New("changed since it was read")

// ProfileConfig returns the config of a profile of the default project and
// its ETag, for a later UpdateProfileConfig.
func (c *Client) ProfileConfig(ctx context.Context, name string) (map[string]string, string, error) {
	p, etag, err := c.in(ctx, "default").GetProfile(name)
	if err != nil {
		return nil, "", notFound(err)
	}
	return p.Config, etag, nil
}

// CreateProfile makes a profile of the default project with config and no
// devices; ErrConflict if one of that name exists.
func (c *Client) CreateProfile(ctx context.Context, name, description string, config map[string]string) error {
	err := c.in(ctx, "default").CreateProfile(api.ProfilesPost{Name: name,
		ProfilePut: api.ProfilePut{Config: config, Description: description}})
	if api.StatusErrorCheck(err, http.StatusConflict) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// UpdateProfileConfig replaces a profile's config if the profile is still
// at etag; ErrConflict if it changed.
func (c *Client) UpdateProfileConfig(ctx context.Context, name, description string, config map[string]string, etag string) error {
	err := c.in(ctx, "default").UpdateProfile(name, api.ProfilePut{Config: config, Description: description}, etag)
	if api.StatusErrorCheck(err, http.StatusPreconditionFailed) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return notFound(err)
}
