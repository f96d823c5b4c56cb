package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deeppacket/deeppacket/data/capture"
	"github.com/deeppacket/deeppacket/internal/testenv"
)

// netnsPair makes two network namespaces joined by a veth pair, with
// unique names, IPv6 off (so the kernel sends nothing of its own) and no
// addresses: the only traffic is what the test sends. It returns the
// namespaces and the receiving end's MAC address; everything is deleted
// when the test ends.
func netnsPair(t *testing.T) (sender, receiver string, mac net.HardwareAddr) {
	t.Helper()
	var id [4]byte
	rand.Read(id[:])
	sender, receiver = "dp-"+hex.EncodeToString(id[:])+"-tx", "dp-"+hex.EncodeToString(id[:])+"-rx"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{sender, receiver} {
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			run("netns", "exec", ns, "sysctl", "-qw", key+"=1")
		}
	}
	mac = net.HardwareAddr{0x02, 0xdb, id[0], id[1], id[2], id[3]}
	run("-n", sender, "link", "add", "tx0", "type", "veth", "peer", "name", "rx0", "netns", receiver)
	run("-n", receiver, "link", "set", "rx0", "address", mac.String())
	run("-n", sender, "link", "set", "tx0", "up")
	run("-n", receiver, "link", "set", "rx0", "up")
	return sender, receiver, mac
}

// ethernetCapture writes the raw-IP packets of an ISCX capture whose time
// is under the capture's first plus span (0: all) as an Ethernet capture
// addressed to mac, which tcpreplay can send, and returns its packet count.
func ethernetCapture(t *testing.T, from, to string, span time.Duration, mac net.HardwareAddr) int {
	t.Helper()
	r, err := capture.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var rec capture.Record
	var first time.Time
	n := 0
	for {
		err := r.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.LinkType != layers.LinkTypeRaw {
			t.Fatalf("%s: link type %v, want raw IP", from, rec.LinkType)
		}
		if first.IsZero() {
			first = rec.Timestamp
		}
		if span > 0 && rec.Timestamp.Sub(first) >= span {
			break
		}
		eth := layers.EthernetTypeIPv4
		if rec.Data[0]>>4 == 6 {
			eth = layers.EthernetTypeIPv6
		}
		frame := append(append(append([]byte{}, mac...), 0x02, 0xdb, 0, 0, 0, 1), byte(eth>>8), byte(eth))
		frame = append(frame, rec.Data...)
		ci := gopacket.CaptureInfo{Timestamp: rec.Timestamp, CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// buildCLI builds deeppacket into a folder any user can reach, removed
// when the test ends.
func buildCLI(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "deeppacket-live-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "deeppacket")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// liveFlow is the part of a row of live's or predict's JSON output the test
// compares.
type liveFlow struct {
	Row         string  `json:"row"`
	Flow        string  `json:"flow"`
	LabelID     int     `json:"label_id"`
	Probability float64 `json:"probability"`
	Packets     int64   `json:"packets"`
	Reason      string  `json:"reason"`
}

func readFlows(t *testing.T, path string) []liveFlow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []liveFlow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r liveFlow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %q: %v", path, sc.Text(), err)
		}
		if r.Row == "flow" {
			rows = append(rows, r)
		}
	}
	return rows
}

// TestLiveVeth runs `deeppacket live` on one end of a veth pair between two
// network namespaces while tcpreplay sends ISCX captures into the other
// end, at their recorded pace and at 10 times it: every flow seen whole
// gets the verdict `deeppacket predict` gives on the same capture, the
// counters add up (received = classified + skipped + dropped, and every
// packet sent was received), and SIGINT and SIGTERM end it with status 0
// after flushing its flows. Needs root (namespaces, veth, capture),
// ip and tcpreplay (scripts/install-deps.sh).
func TestLiveVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a veth pair and captures on it")
	}
	for _, tool := range []string{"ip", "tcpreplay"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	shim := filepath.Join(testenv.RepoRoot(t), "build", "libdptorch.so")
	bin := buildCLI(t)
	for _, tc := range []struct {
		capture    string
		span       time.Duration // of the capture replayed (0: all)
		multiplier string
		signal     os.Signal
	}{
		{"vpn_aim_chat.pcap", 8 * time.Second, "1", os.Interrupt},
		{"vpn_sftp.pcap", 0, "10", syscall.SIGTERM},
	} {
		t.Run(tc.capture+"@"+tc.multiplier+"x", func(t *testing.T) {
			dir := t.TempDir()
			sender, receiver, mac := netnsPair(t)
			pcap := filepath.Join(dir, "eth.pcap")
			sent := ethernetCapture(t, testenv.Shared(t, "pcaps/iscx/"+tc.capture), pcap, tc.span, mac)

			predicted := filepath.Join(dir, "predict.jsonl")
			pred := exec.Command(bin, "predict", "--quiet", "--model", model, "--format", "jsonl", "-o", predicted, pcap)
			pred.Env = append(os.Environ(), "DEEPPACKET_SHIM="+shim)
			if out, err := pred.CombinedOutput(); err != nil {
				t.Fatalf("predict: %v\n%s", err, out)
			}

			verdicts := filepath.Join(dir, "live.jsonl")
			live := exec.Command("ip", "netns", "exec", receiver, bin, "live", "--quiet", "--log-format", "json",
				"--interface", "rx0", "--model", model, "-o", verdicts, "--stats-interval", "1s",
				"--idle-timeout", "10m", "--max-delay", "100ms")
			live.Env = append(os.Environ(), "DEEPPACKET_SHIM="+shim)
			stderr, err := live.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := live.Start(); err != nil {
				t.Fatal(err)
			}
			defer live.Process.Kill()
			logs := make(chan map[string]any, 1024)
			go func() {
				defer close(logs)
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					var rec map[string]any
					if json.Unmarshal(sc.Bytes(), &rec) != nil {
						rec = map[string]any{"msg": sc.Text()}
					}
					logs <- rec
				}
			}()
			waitLog := func(msg string) map[string]any {
				t.Helper()
				timeout := time.After(60 * time.Second)
				for {
					select {
					case rec, ok := <-logs:
						if !ok {
							t.Fatalf("live exited before logging %q", msg)
						}
						if rec["msg"] == msg {
							return rec
						}
						if rec["level"] == "ERROR" || rec["msg"] != nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), "deeppacket:") {
							t.Fatalf("live: %v", rec)
						}
					case <-timeout:
						t.Fatalf("no %q from live within a minute", msg)
					}
				}
			}
			waitLog("capturing")

			start := time.Now()
			replay := exec.Command("ip", "netns", "exec", sender, "tcpreplay", "-q", "-i", "tx0", "--multiplier", tc.multiplier, pcap)
			if out, err := replay.CombinedOutput(); err != nil {
				t.Fatalf("tcpreplay: %v\n%s", err, out)
			}
			t.Logf("tcpreplay sent %d packets in %v", sent, time.Since(start).Round(time.Millisecond))
			time.Sleep(time.Second) // the last packets through the ring and the model
			if err := live.Process.Signal(tc.signal); err != nil {
				t.Fatal(err)
			}
			final := waitLog("live: final counters")
			for range logs {
			}
			if err := live.Wait(); err != nil {
				t.Fatalf("live after %v: %v (want exit status 0)", tc.signal, err)
			}
			count := func(name string) int64 { return int64(final[name].(float64)) }
			t.Logf("final counters: %v", final)
			if count("received") != count("classified")+count("skipped")+count("dropped") {
				t.Errorf("received %d != classified %d + skipped %d + dropped %d",
					count("received"), count("classified"), count("skipped"), count("dropped"))
			}
			if got := count("received") + count("kernel_dropped"); got != int64(sent) {
				t.Errorf("received %d + dropped by the kernel %d, tcpreplay sent %d", count("received"), count("kernel_dropped"), sent)
			}

			want := map[string]liveFlow{}
			for _, f := range readFlows(t, predicted) {
				want[f.Flow] = f
			}
			got := map[string]liveFlow{}
			for _, f := range readFlows(t, verdicts) {
				if f.Reason != "first-k" {
					if f.Reason != "shutdown" {
						t.Errorf("flow %s ended by %q before shutdown", f.Flow, f.Reason)
					}
					got[f.Flow] = f
				}
			}
			whole := 0
			lossless := count("dropped")+count("kernel_dropped") == 0
			for id, w := range want {
				g, ok := got[id]
				if !ok || g.Packets != w.Packets {
					if lossless {
						t.Errorf("flow %s: predict %+v, live %+v: not seen whole with nothing dropped", id, w, g)
					}
					continue
				}
				whole++
				if g.LabelID != w.LabelID || math.Abs(g.Probability-w.Probability) > 1e-5 {
					t.Errorf("flow %s: live %+v, predict %+v", id, g, w)
				}
			}
			if len(got) != len(want) {
				t.Errorf("live has %d flows, predict %d", len(got), len(want))
			}
			t.Logf("%d of %d flows seen whole, all with predict's verdict", whole, len(want))
			if whole == 0 {
				t.Error("no flow seen whole")
			}
		})
	}
}

// TestLiveWithoutPrivileges runs deeppacket as a user without capabilities
// (as root: nobody, through setpriv): replaying a capture works and ends
// with status 0 and its verdicts, and capturing on an interface is refused
// with an error naming CAP_NET_RAW.
func TestLiveWithoutPrivileges(t *testing.T) {
	model := testenv.Shared(t, "fixtures/reference_traffic_resnet.ckpt")
	capture := testenv.Shared(t, "pcaps/iscx/vpn_icq_chat.pcap")
	shim := filepath.Join(testenv.RepoRoot(t), "build", "libdptorch.so")
	bin := buildCLI(t)
	dir := filepath.Dir(bin)
	unprivileged := func(args ...string) *exec.Cmd {
		if os.Geteuid() != 0 {
			return exec.Command(bin, args...)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skipf("running as root, and setpriv (util-linux), which drops to nobody, is missing: %v", err)
		}
		return exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all", "--bounding-set=-all", bin}, args...)...)
	}

	replay := unprivileged("live", "--quiet", "--read-file", capture, "--replay-speed", "0", "--model", model)
	replay.Env = append(os.Environ(), "DEEPPACKET_SHIM="+shim)
	replay.Dir = dir
	out, err := replay.Output()
	if err != nil {
		t.Fatalf("replay without privileges: %v\n%s", err, err.(*exec.ExitError).Stderr)
	}
	ends := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var f liveFlow
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("output %q: %v", line, err)
		}
		if f.Reason == "end" {
			ends++
		}
	}
	if ends == 0 {
		t.Errorf("no flow verdicts at the end of the replay:\n%s", out)
	}

	capturing := unprivileged("live", "--quiet", "--interface", "lo", "--model", model)
	capturing.Env = append(os.Environ(), "DEEPPACKET_SHIM="+shim)
	capturing.Dir = dir
	msg, err := capturing.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "CAP_NET_RAW") {
		t.Errorf("capturing without privileges: %v\n%s", err, msg)
	}
}
