package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"

	"github.com/deeppacket/deeppacket/data/capture"
)

// Source delivers frames to the engine.
type Source interface {
	// Read returns the next frame, valid until the next call, and its
	// capture time. It returns ErrNoPacket when none came within a short
	// wait (so that the caller can check for cancellation) and io.EOF at
	// the end of a finite source.
	Read(ctx context.Context) (data []byte, ci gopacket.CaptureInfo, err error)
	LinkType() layers.LinkType
	// KernelDrops is the number of packets the kernel dropped for lack of
	// room in the capture buffer since the source was opened.
	KernelDrops() (int64, error)
	// Now is the source's clock, which flow timeouts follow: the wall
	// clock for an interface, the capture's clock for a replayed file.
	Now() time.Time
	// Lossless says whether the engine should wait for room in its queue
	// rather than drop a packet (a file replayed as fast as possible).
	Lossless() bool
	Close() error
}

// ErrNoPacket is Read's answer when no packet came within its wait.
var ErrNoPacket = errors.New("no packet yet")

// InterfaceOptions configure a capture on a network interface.
type InterfaceOptions struct {
	Filter     string // BPF expression, compiled by libpcap and run in the kernel
	SnapLen    int    // bytes kept per packet
	BufferSize int    // bytes of the kernel's memory-mapped ring
	Promisc    bool
}

// pollInterval is how long an interface read waits before ErrNoPacket.
const pollInterval = 100 * time.Millisecond

// interfaceSource captures with libpcap, which on Linux reads a TPACKET_V3
// memory-mapped AF_PACKET ring and runs the filter in the kernel.
type interfaceSource struct {
	h *pcap.Handle
}

// OpenInterface starts capturing on the named interface. A missing
// interface, and a process without CAP_NET_RAW, give errors that say so.
func OpenInterface(name string, o InterfaceOptions) (Source, error) {
	if _, err := net.InterfaceByName(name); err != nil {
		var names []string
		if ifs, lerr := net.Interfaces(); lerr == nil {
			for _, i := range ifs {
				names = append(names, i.Name)
			}
		}
		return nil, fmt.Errorf("interface %q: no such interface (this network namespace has: %s)", name, strings.Join(names, ", "))
	}
	in, err := pcap.NewInactiveHandle(name)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", name, err)
	}
	defer in.CleanUp()
	for _, set := range []error{
		in.SetSnapLen(o.SnapLen),
		in.SetPromisc(o.Promisc),
		in.SetTimeout(pollInterval),
		in.SetImmediateMode(true),
		in.SetBufferSize(o.BufferSize),
	} {
		if set != nil {
			return nil, fmt.Errorf("capture on %s: %w", name, set)
		}
	}
	h, err := in.Activate()
	if err != nil {
		if strings.Contains(err.Error(), "Permission Denied") || strings.Contains(err.Error(), "permission") {
			return nil, fmt.Errorf("capture on %s: permission denied: capturing needs CAP_NET_RAW (run as root, or `setcap cap_net_raw,cap_net_admin+ep` on the binary); without it, try --read-file: %w", name, err)
		}
		return nil, fmt.Errorf("capture on %s: %w", name, err)
	}
	if o.Filter != "" {
		if err := h.SetBPFFilter(o.Filter); err != nil {
			h.Close()
			return nil, fmt.Errorf("capture on %s: filter %q: %w", name, o.Filter, err)
		}
	}
	return &interfaceSource{h: h}, nil
}

func (s *interfaceSource) Read(ctx context.Context) ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := s.h.ZeroCopyReadPacketData()
	if errors.Is(err, pcap.NextErrorTimeoutExpired) {
		return nil, ci, ErrNoPacket
	}
	return data, ci, err
}

func (s *interfaceSource) LinkType() layers.LinkType { return s.h.LinkType() }

func (s *interfaceSource) KernelDrops() (int64, error) {
	st, err := s.h.Stats()
	if err != nil {
		return 0, err
	}
	return int64(st.PacketsDropped), nil
}

func (s *interfaceSource) Now() time.Time { return time.Now() }
func (s *interfaceSource) Lossless() bool { return false }
func (s *interfaceSource) Close() error   { s.h.Close(); return nil }

// fileSource replays a capture file at a multiple of its recorded pace.
type fileSource struct {
	path   string
	r      *capture.Reader
	filter *pcap.BPF
	speed  float64
	rec    capture.Record

	// The clock: Read sets it, Now (called from another goroutine) reads
	// it.
	mu            sync.Mutex
	started       bool
	firstTS, last time.Time // capture clock: first and latest packet
	wallStart     time.Time
}

// OpenFile replays the capture at path: speed times its recorded pace,
// or as fast as the engine takes packets when speed is 0 (then nothing is
// dropped). filter, when set, is a BPF expression libpcap compiles for the
// capture's link type and runs on each packet.
func OpenFile(path string, speed float64, filter string) (Source, error) {
	if speed < 0 {
		return nil, fmt.Errorf("replay speed %g: want 0 (as fast as possible) or more", speed)
	}
	r, err := capture.Open(path)
	if err != nil {
		return nil, err
	}
	s := &fileSource{path: path, r: r, speed: speed}
	if filter != "" {
		if s.filter, err = pcap.NewBPF(dlt(r.LinkType()), 1<<18, filter); err != nil {
			r.Close()
			return nil, fmt.Errorf("read %s: filter %q: %w", path, filter, err)
		}
	}
	return s, nil
}

// dlt is the libpcap DLT_ value of a capture file's link type: they are
// equal but for raw IP, which files record as LINKTYPE_RAW (101) and Linux's
// libpcap compiles filters for as DLT_RAW (12).
func dlt(lt layers.LinkType) layers.LinkType {
	if lt == layers.LinkTypeRaw {
		return 12
	}
	return lt
}

func (s *fileSource) Read(ctx context.Context) ([]byte, gopacket.CaptureInfo, error) {
	for {
		err := s.r.Next(&s.rec)
		if err == io.EOF {
			return nil, gopacket.CaptureInfo{}, io.EOF
		}
		if err != nil {
			return nil, gopacket.CaptureInfo{}, fmt.Errorf("read %s: %w", s.path, err)
		}
		ci := gopacket.CaptureInfo{Timestamp: s.rec.Timestamp, CaptureLength: len(s.rec.Data), Length: len(s.rec.Data)}
		s.mu.Lock()
		if !s.started {
			s.started, s.firstTS, s.wallStart = true, ci.Timestamp, time.Now()
		}
		s.last = ci.Timestamp
		firstTS, wallStart := s.firstTS, s.wallStart
		s.mu.Unlock()
		if s.speed > 0 {
			due := wallStart.Add(time.Duration(float64(ci.Timestamp.Sub(firstTS)) / s.speed))
			if wait := time.Until(due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ci, ctx.Err()
				case <-t.C:
				}
			}
		}
		if s.filter != nil && !s.filter.Matches(ci, s.rec.Data) {
			continue
		}
		return s.rec.Data, ci, nil
	}
}

// LinkType is the last packet's (a pcapng file may mix link types).
func (s *fileSource) LinkType() layers.LinkType {
	if s.started { // only Read's goroutine writes it
		return s.rec.LinkType
	}
	return s.r.LinkType()
}

// KernelDrops is 0: nothing stands between a file and the engine.
func (s *fileSource) KernelDrops() (int64, error) { return 0, nil }

func (s *fileSource) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.speed > 0 && s.started {
		return s.firstTS.Add(time.Duration(float64(time.Since(s.wallStart)) * s.speed))
	}
	return s.last
}

func (s *fileSource) Lossless() bool { return s.speed == 0 }
func (s *fileSource) Close() error   { return s.r.Close() }
