package controller

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// exportTree writes the spec directory of commit sha to dir: git archive,
// read here entry by entry, so that only regular files within the limits
// are written, through an os.Root that nothing can leave. It returns the
// entries it left out.
func (g *GitSource) exportTree(ctx context.Context, clone, sha, dir string) ([]skippedFile, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	ctx, cancel := context.WithTimeout(ctx, g.localTimeout())
	defer cancel()
	// git archive takes --end-of-options but not "--" after it (the "--"
	// would be a pathspec); the path is validated not to begin with "-",
	// and GIT_LITERAL_PATHSPECS keeps it from being pathspec magic.
	cmd, stderr := g.command(ctx, clone, "archive", "--format=tar", "--end-of-options", sha, path.Clean(g.Path))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	skipped, xerr := g.extract(root, stdout)
	if xerr != nil {
		cancel() // stop git archive
	}
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	var limit *exportLimitError
	switch {
	case errors.As(xerr, &limit):
		return nil, xerr
	case werr != nil:
		return nil, g.commandError(ctx, "archive", werr, stderr.String()+" (does the path exist at that commit?)")
	case xerr != nil:
		return nil, xerr
	}
	return skipped, nil
}

// exportLimitError is an export over MaxExportSize or MaxFiles.
type exportLimitError struct{ msg string }

func (e *exportLimitError) Error() string { return e.msg }

// extract writes the regular files of a tar stream under root.
func (g *GitSource) extract(root *os.Root, r io.Reader) ([]skippedFile, error) {
	maxFile, maxTotal, maxFiles := g.MaxFileSize, g.MaxExportSize, g.MaxFiles
	if maxFile <= 0 {
		maxFile = defaultGitMaxFileSize
	}
	if maxTotal <= 0 {
		maxTotal = defaultGitMaxExportSize
	}
	if maxFiles <= 0 {
		maxFiles = defaultGitMaxFiles
	}
	var skipped []skippedFile
	var total int64
	entries := 0
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return skipped, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading git archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader { // git's commit id
			continue
		}
		if entries++; entries > maxFiles {
			return nil, &exportLimitError{fmt.Sprintf("more than %d files and directories: refused", maxFiles)}
		}
		name := path.Clean(hdr.Name)
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			skipped = append(skipped, skippedFile{hdr.Name, "not a relative path, not exported"})
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if hdr.Size > maxFile {
				skipped = append(skipped, skippedFile{name, fmt.Sprintf("%d bytes, over the limit of %d: not exported", hdr.Size, maxFile)})
				continue
			}
			if total += hdr.Size; total > maxTotal {
				return nil, &exportLimitError{fmt.Sprintf("the files add up to more than %d bytes: refused", maxTotal)}
			}
			if err := writeExported(root, name, tr, hdr.Size); err != nil {
				return nil, err
			}
		case tar.TypeSymlink:
			skipped = append(skipped, skippedFile{name, fmt.Sprintf("a symbolic link (to %q), not exported", hdr.Linkname)})
		default:
			skipped = append(skipped, skippedFile{name, fmt.Sprintf("not a regular file (tar type %q), not exported", hdr.Typeflag)})
		}
	}
}

// writeExported creates name (which must not exist) under root with the
// next size bytes of r.
func writeExported(root *os.Root, name string, r io.Reader, size int64) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Close()
}
