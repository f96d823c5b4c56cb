package torch

// The shim library is not linked but opened at first use (see load.c); the
// run path tells the loader where make builds it.

//go:generate go run ./internal/genload

// #cgo CFLAGS: -I${SRCDIR}/shim
// #cgo LDFLAGS: -ldl -Wl,-rpath,${SRCDIR}/../build
// #include <stdlib.h>
// #include "dptorch.h"
// #include "load.h"
import "C"

import (
	"errors"
	"unsafe"
)

// ErrTorch marks errors raised by libtorch; errors.Is(err, ErrTorch) tells
// them from Go-side argument errors.
var ErrTorch = errors.New("libtorch")

// torchError is a libtorch exception's message.
type torchError struct{ msg string }

func (e *torchError) Error() string        { return "libtorch: " + e.msg }
func (e *torchError) Is(target error) bool { return target == ErrTorch }

// Load opens the libtorch shim, if that has not been done yet, and reports
// why it cannot be. Every function of the package does this on first use
// and returns the same reason as its error; Load asks without making
// anything.
func Load() error {
	if msg := C.dpt_load_error(); msg != nil {
		return &torchError{msg: C.GoString(msg)}
	}
	return nil
}

// check turns a shim error into a Go error and frees the C string.
func check(err C.dpt_error) error {
	if err == nil {
		return nil
	}
	msg := C.GoString(err)
	C.dpt_free_error(err)
	return &torchError{msg: msg}
}

// cString returns a C copy of s; the caller frees it with freeC.
func cString(s string) *C.char { return C.CString(s) }

func freeC(p *C.char) { C.free(unsafe.Pointer(p)) }

// goString copies a malloc'd C string and frees it.
func goString(p *C.char) string {
	s := C.GoString(p)
	C.dpt_free_string(p)
	return s
}
