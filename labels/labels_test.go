package labels

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/deeppacket/deeppacket/internal/testenv"
)

func ptr(v int64) *int64 { return &v }

func eq(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func TestBuiltinLookup(t *testing.T) {
	tests := []struct {
		path         string
		app, traffic *int64
	}{
		{"AIMchat1.pcapng", ptr(0), ptr(0)},
		{"/data/Facebook_Audio1a.pcap", ptr(2), ptr(4)},
		{"youtubeHTML5_1.pcap", ptr(14), ptr(3)},
		{"vimeo1.pcap", ptr(12), ptr(3)},
		{"voipbuster_4a.pcap", ptr(13), ptr(4)},
		{"GmailChat2.pcap", ptr(4), ptr(0)},
		{"scpdown1.pcap", ptr(8), ptr(2)},
		{"spotify1.pcap", ptr(11), ptr(3)},
		{"vpn_voipbuster1a.pcap", nil, ptr(10)},
		{"netflix1.pcap", ptr(7), ptr(3)},
		{"vpn_bittorrent.pcap", nil, ptr(9)},
		{"vpn_skype_audio2.pcap", nil, ptr(10)},
		{"torfacebook.pcap", nil, nil}, // Tor was removed from the reference
		{"torrent01.pcap", nil, nil},
		{"aimchat1_extra.pcap", nil, nil}, // exact stems only
		{"aimchat1.part2.pcap", ptr(0), ptr(0)},
	}
	m := Builtin()
	for _, tc := range tests {
		got := m.Lookup(tc.path)
		if !eq(got.App, tc.app) || !eq(got.Traffic, tc.traffic) {
			t.Errorf("Lookup(%q) = %v/%v, want %v/%v", tc.path, got.App, got.Traffic, tc.app, tc.traffic)
		}
	}
}

func TestBuiltinIDsInRange(t *testing.T) {
	for stem, id := range builtinApp {
		if id < 0 || id >= NumApps {
			t.Errorf("app %s: id %d out of range", stem, id)
		}
	}
	for stem, id := range builtinTraffic {
		if id < 0 || id >= NumTraffic {
			t.Errorf("traffic %s: id %d out of range", stem, id)
		}
		if strings.HasPrefix(stem, "vpn_") != (id >= 5) {
			t.Errorf("traffic %s: id %d (%s), VPN captures are exactly the VPN classes", stem, id, TrafficName(int(id)))
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{AppName(0), "AIM Chat"}, {AppName(14), "Youtube"}, {AppName(15), "app 15"},
		{TrafficName(4), "Voip"}, {TrafficName(10), "VPN: Voip"}, {TrafficName(-1), "traffic -1"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{"ok", "# c\nfoo\t1\t\nbar\t\t2\n\nbaz\t\t\n", ""},
		{"columns", "foo\t1\n", "2 columns"},
		{"not a number", "foo\tx\t1\n", `label "x"`},
		{"negative", "foo\t-1\t1\n", `label "-1"`},
		{"twice", "foo\t1\t1\nFOO\t2\t2\n", "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(strings.NewReader(tc.text))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l := m.Lookup("Foo.pcap"); !eq(l.App, ptr(1)) || l.Traffic != nil {
				t.Errorf("foo: %v %v", l.App, l.Traffic)
			}
			if l := m.Lookup("bar.pcap"); l.App != nil || !eq(l.Traffic, ptr(2)) {
				t.Errorf("bar: %v %v", l.App, l.Traffic)
			}
			if !m.Lookup("baz.pcap").None() || !m.Lookup("aimchat1.pcap").None() {
				t.Error("baz and a built-in stem should have no labels in a user's map")
			}
		})
	}
}

// TestLoadISCX reads the shared ISCX label file: every capture there gets
// the labels its row gives.
func TestLoadISCX(t *testing.T) {
	path := testenv.Shared(t, "pcaps/iscx/labels.tsv")
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pcaps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.pcap"))
	if len(pcaps) != 41 {
		t.Fatalf("%d ISCX captures, want 41", len(pcaps))
	}
	for _, p := range pcaps {
		l := m.Lookup(p)
		if l.Traffic == nil || *l.Traffic >= NumTraffic {
			t.Errorf("%s: traffic label %v", p, l.Traffic)
		}
		vpn := strings.HasPrefix(filepath.Base(p), "vpn_")
		if vpn != (l.App == nil) {
			t.Errorf("%s: app label %v; VPN captures have none", p, l.App)
		}
	}
	if l := m.Lookup("skype_file.pcap"); !eq(l.App, ptr(10)) || !eq(l.Traffic, ptr(2)) {
		t.Errorf("skype_file: %v %v, want 10 (Skype) and 2 (File Transfer)", l.App, l.Traffic)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.tsv")); err == nil || !strings.Contains(err.Error(), "missing.tsv") {
		t.Errorf("missing file: error %v should name it", err)
	}
}
