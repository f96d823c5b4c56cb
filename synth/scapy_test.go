package synth

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

type scapyReport struct {
	Packets        int `json:"packets"`
	NotIPv4        int `json:"not_ipv4"`
	BadIP          int `json:"bad_ip"`
	BadTCP         int `json:"bad_tcp"`
	BadUDP         int `json:"bad_udp"`
	Kept           int `json:"kept"`
	TCPFlows       int `json:"tcp_flows"`
	TLSClientHello int `json:"tls_client_hello"`
	TLSServerHello int `json:"tls_server_hello"`
	SSHBanner      int `json:"ssh_banner"`
	RTPv2          int `json:"rtp_v2"`
}

// TestScapyReadsCaptures reads a small set with scapy, an independent
// dissector: every frame is Ethernet and IPv4 with checksums scapy agrees
// with, the reference's own omit rule keeps exactly the packets Stats
// counts, TLS flows open with a ClientHello and ServerHello scapy parses,
// SSH flows with version lines, and VoIP media is RTP version 2.
func TestScapyReadsCaptures(t *testing.T) {
	py := testenv.Python(t)
	dir := t.TempDir()
	stats, err := Generate(dir, Options{Seed: 3, Scale: 0.1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(testenv.RepoRoot(t), "scripts", "scapy_read.py")}
	for _, s := range stats {
		args = append(args, filepath.Join(dir, s.Name))
	}
	out, err := exec.Command(py, args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("scapy_read.py: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var reports map[string]scapyReport
	if err := json.Unmarshal(out, &reports); err != nil {
		t.Fatalf("scapy_read.py output: %v\n%s", err, out)
	}
	for _, c := range Captures() {
		r, ok := reports[c.Name]
		if !ok {
			t.Errorf("%s: scapy did not report it", c.Name)
			continue
		}
		var st Stats
		for _, s := range stats {
			if s.Name == c.Name {
				st = s
			}
		}
		if r.Packets != st.Packets || r.Kept != st.Kept {
			t.Errorf("%s: scapy reads %d packets and keeps %d; written %d, %d kept", c.Name, r.Packets, r.Kept, st.Packets, st.Kept)
		}
		if r.NotIPv4+r.BadIP+r.BadTCP+r.BadUDP > 0 {
			t.Errorf("%s: scapy finds %+v", c.Name, r)
		}
		switch {
		case c.VPN:
			if r.TCPFlows != 0 || r.RTPv2 != 0 {
				t.Errorf("%s: scapy sees inside the tunnel: %+v", c.Name, r)
			}
		case c.App == "SFTP" || c.App == "SCP":
			if r.TCPFlows == 0 || r.SSHBanner != r.TCPFlows {
				t.Errorf("%s: %d of %d flows open with SSH version lines", c.Name, r.SSHBanner, r.TCPFlows)
			}
		case c.Class == "Voip":
			// Two STUN packets open each call; the rest is media.
			if r.RTPv2 < r.Packets*3/4 {
				t.Errorf("%s: %d of %d packets are RTP", c.Name, r.RTPv2, r.Packets)
			}
		case strings.HasPrefix(c.Name, "youtube"):
			if r.TCPFlows != 0 {
				t.Errorf("%s: QUIC capture has TCP flows", c.Name)
			}
		default:
			if r.TCPFlows == 0 || r.TLSClientHello != r.TCPFlows || r.TLSServerHello != r.TCPFlows {
				t.Errorf("%s: of %d TCP flows, %d open with a ClientHello and %d with a ServerHello scapy parses",
					c.Name, r.TCPFlows, r.TLSClientHello, r.TLSServerHello)
			}
		}
	}
}
