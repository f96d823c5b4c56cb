// Package atomicfile writes a file under a temporary name in the same folder
// and renames it into place only when it is complete, so that a crash or an
// error never leaves a half-written output where a finished one is expected.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is an output being written. Call Commit when every byte is written,
// or Abort (safe to defer: it does nothing after Commit) to discard it.
type File struct {
	*os.File
	path string
	done bool
	// written counts the bytes written through Write, flushed those
	// handed to the kernel's writeback.
	written, flushed int64
}

// writebackBytes is how much Write lets pile up before it starts the
// kernel writing it to disk. Without it the whole file waits in memory
// for Commit's fsync, which then stalls for as long as the disk takes to
// write it; started early, writing overlaps the work that produces the
// file.
const writebackBytes = 8 << 20

// Write writes p, starting the writeback of every writebackBytes written
// (through Write, the path of the io.Writer users such as the Parquet
// writers; the other methods of os.File write without the hint).
func (f *File) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.written += int64(n)
	if f.written-f.flushed >= writebackBytes {
		startWriteback(f.File, f.flushed, f.written-f.flushed)
		f.flushed = f.written
	}
	return n, err
}

// Create opens a temporary file beside path. The folder is created if needed.
func Create(path string) (*File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &File{File: f, path: path}, nil
}

// Path is the final name the file gets on Commit.
func (f *File) Path() string { return f.path }

// Commit flushes, closes and renames the temporary file to its final name.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already finished", f.path)
	}
	f.done = true
	tmp := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Abort closes and removes the temporary file; after Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}
