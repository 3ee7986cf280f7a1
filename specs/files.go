package specs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Size limits of the files incuslb reads.
const (
	MaxSpecFile        = 1 << 20 // bytes in one spec file (or stdin)
	MaxCertificateFile = 1 << 20 // bytes in one certificate file
)

// fileError is a problem with one file: Error() is "PATH: REASON", and the
// reason alone goes into a FieldError whose Source is the file.
type fileError struct {
	path, reason string
	err          error // the underlying error, for errors.Is
}

func (e *fileError) Error() string { return e.path + ": " + e.reason }
func (e *fileError) Unwrap() error { return e.err }

// reasonOf is err without the path, when err is about one file.
func reasonOf(err error) string {
	var fe *fileError
	if errors.As(err, &fe) {
		return fe.reason
	}
	return err.Error()
}

// ioFailure turns an error from stat or open into a fileError.
func ioFailure(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &fileError{path, "does not exist", err}
	case errors.Is(err, fs.ErrPermission):
		return &fileError{path, "cannot be read: permission denied", err}
	case errors.Is(err, syscall.ENXIO):
		return &fileError{path, "not a regular file (nothing can be read from it)", err}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fileError{path, "cannot be read: " + pe.Err.Error(), err}
	}
	return &fileError{path, "cannot be read: " + err.Error(), err}
}

// notRegular says what kind of file mode is, for a file that is not a
// regular one.
func notRegular(path string, mode fs.FileMode) error {
	kind := "a special file"
	switch {
	case mode.IsDir():
		kind = "a directory"
	case mode&fs.ModeNamedPipe != 0:
		kind = "a FIFO"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	case mode&fs.ModeCharDevice != 0:
		kind = "a character device"
	case mode&fs.ModeDevice != 0:
		kind = "a block device"
	case mode&fs.ModeSymlink != 0:
		kind = "a symbolic link"
	}
	return &fileError{path, "not a regular file (it is " + kind + ")", nil}
}

// ReadRegularFile reads path, which must be a regular file (symbolic links
// to one are followed) of at most max bytes. Anything else is refused
// without reading from it: a directory, a FIFO (never waited on), a socket,
// a device such as /dev/zero. It never reads more than max+1 bytes.
func ReadRegularFile(path string, max int64) ([]byte, error) {
	// Look before opening: opening a device can have effects of its own.
	before, err := os.Stat(path)
	if err != nil {
		return nil, ioFailure(path, err)
	}
	if !before.Mode().IsRegular() {
		return nil, notRegular(path, before.Mode())
	}
	// O_NONBLOCK: should a FIFO be swapped in after the Stat, opening it
	// does not wait for a writer (and the check below refuses it).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, ioFailure(path, err)
	}
	defer f.Close()
	return readOpened(f, path, before, max)
}

// readOpened checks, on the open file itself, that it is the regular file
// that was looked at, then reads at most max bytes of it.
func readOpened(f *os.File, path string, before fs.FileInfo, max int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, ioFailure(path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	if !os.SameFile(before, fi) {
		return nil, &fileError{path, "changed while it was being opened; try again", nil}
	}
	tooLarge := &fileError{path, fmt.Sprintf("larger than %d bytes", max), nil}
	if fi.Size() > max {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, ioFailure(path, err)
	}
	if int64(len(data)) > max {
		return nil, tooLarge
	}
	return data, nil
}

// LoadCertificateUnder reads a certificate file that must lie under root
// (the controller's --cert-root): path is absolute, or relative to root;
// after every symbolic link is resolved (root's own included) it must still
// be under root. It is then read as ReadRegularFile does (at most
// MaxCertificateFile bytes) and checked as LoadCertificate does. The file
// is opened through root itself, so a link swapped in after the check
// cannot lead out of it.
func LoadCertificateUnder(root, path string) ([]byte, error) {
	data, err := readUnder(root, path, MaxCertificateFile)
	if err != nil {
		return nil, certReadError(path, err)
	}
	return parseCertificate(path, data)
}

func readUnder(root, path string, max int64) ([]byte, error) {
	outside := fmt.Errorf("certificate file %s is outside the certificate root %s (--cert-root)", path, root)
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("certificate root %s (--cert-root): %v", root, err)
	}
	realRoot, err := filepath.EvalSymlinks(absRoot)
	if err != nil {
		return nil, fmt.Errorf("certificate root %s (--cert-root): %v", root, err)
	}
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(absRoot, full)
	}
	full = filepath.Clean(full)
	// Refuse a lexical escape ("../x.pem") before asking the file system
	// anything about it.
	if _, ok := within(absRoot, full); !ok {
		if _, ok := within(realRoot, full); !ok {
			return nil, outside
		}
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		return nil, ioFailure(path, err)
	}
	rel, ok := within(realRoot, real)
	if !ok {
		return nil, outside
	}
	r, err := os.OpenRoot(realRoot)
	if err != nil {
		return nil, fmt.Errorf("certificate root %s (--cert-root): %v", root, err)
	}
	defer r.Close()
	before, err := r.Stat(rel)
	if err != nil {
		return nil, ioFailure(path, err)
	}
	if !before.Mode().IsRegular() {
		return nil, notRegular(path, before.Mode())
	}
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if strings.Contains(err.Error(), "path escapes from parent") {
			return nil, outside
		}
		return nil, ioFailure(path, err)
	}
	defer f.Close()
	return readOpened(f, path, before, max)
}

// within returns path relative to dir when path is dir or lies under it;
// both are absolute and clean.
func within(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}

// certReadError words a failure to read a certificate file.
func certReadError(path string, err error) error {
	var fe *fileError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("file %s does not exist", path)
	case errors.As(err, &fe):
		return fmt.Errorf("cannot read %s: %s", path, fe.reason)
	}
	return err
}

// ListFiles lists the spec files Load reads from path, sorted: path itself
// when it is a file, or a directory's *.yaml, *.yml and *.json entries (not
// recursive; subdirectories are ignored). An entry that cannot be read
// safely is left out and reported in skipped, one problem for its file: a
// symbolic link that leads outside the directory (or nowhere), anything but
// a regular file, or a file that cannot be opened. err is for path itself.
func ListFiles(path string) (files []string, skipped ErrorList, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, nil, notRegular(path, fi.Mode())
		}
		return []string{path}, nil, nil
	}
	absDir, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	realDir, err := filepath.EvalSymlinks(absDir)
	if err != nil {
		return nil, nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		if e.IsDir() {
			continue
		}
		f := filepath.Join(path, e.Name())
		if err := checkSpecEntry(f, realDir, e); err != nil {
			skipped = append(skipped, FieldError{Source: f, Reason: reasonOf(err)})
			continue
		}
		files = append(files, f)
	}
	return files, skipped, nil
}

// checkSpecEntry says why the directory entry f cannot be read as a spec
// file, or nil.
func checkSpecEntry(f, realDir string, e fs.DirEntry) error {
	if e.Type()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(f)
		if err != nil {
			return &fileError{f, "a symbolic link that leads nowhere", err}
		}
		abs, err := filepath.Abs(target)
		if err != nil {
			return ioFailure(f, err)
		}
		if _, ok := within(realDir, abs); !ok {
			return &fileError{f, "a symbolic link to " + target + ", outside the spec directory", nil}
		}
	}
	fi, err := os.Stat(f)
	if err != nil {
		return ioFailure(f, err)
	}
	if fi.IsDir() {
		return &fileError{f, "not a regular file (it is a directory)", nil}
	}
	if !fi.Mode().IsRegular() {
		return notRegular(f, fi.Mode())
	}
	// Can it be opened? (Reading goes through ReadRegularFile anyway.)
	h, err := os.OpenFile(f, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ioFailure(f, err)
	}
	return h.Close()
}

// Files lists the spec files Load would read from path (a file or a
// directory), sorted, as ListFiles does. When some entries had to be left
// out, it returns the others and an ErrorList naming each one left out: a
// caller that stops at the error reads nothing it should not; a caller that
// can go on with the rest uses ListFiles.
func Files(path string) ([]string, error) {
	files, skipped, err := ListFiles(path)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		return files, skipped
	}
	return files, nil
}

// LoadCertificates reads every certificate of t with load (LoadCertificate
// or LoadCertificateUnder), the default first. On failure it names the
// field of the file that failed.
func LoadCertificates(t *TLSSpec, load func(string) ([]byte, error)) ([][]byte, *FieldError) {
	if t == nil {
		return nil, nil
	}
	var pems [][]byte
	fail := func(path string, err error) ([][]byte, *FieldError) {
		return nil, &FieldError{Path: path, Reason: err.Error()}
	}
	if t.CertificateFile != "" {
		pem, err := load(t.CertificateFile)
		if err != nil {
			return fail("spec.frontend.tls.certificateFile", err)
		}
		pems = append(pems, pem)
	}
	for i, c := range t.Certificates {
		pem, err := load(c.File)
		if err != nil {
			return fail(fmt.Sprintf("spec.frontend.tls.certificates[%d].file", i), err)
		}
		pems = append(pems, pem)
	}
	return pems, nil
}
