// Package labels holds the reference's label maps (from a capture's name to
// its application id and traffic id, and the class names of those ids) and
// its two classification tasks (Application, Traffic: a model's head size
// and class names). It is a leaf: pure Go, importing none of our packages,
// so that preprocessing, the split, training and the CLI share it without
// pulling in model code.
package labels

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The reference's classes: 15 applications and 11 traffic classes.
const (
	NumApps    = 15
	NumTraffic = 11
)

// The reference's models have these output sizes (its older label sets had
// 17 and 12 classes, and its published checkpoints keep those heads).
const (
	AppOutputDim     = 17
	TrafficOutputDim = 12
)

var appNames = [NumApps]string{
	"AIM Chat", "Email", "Facebook", "FTPS", "Gmail", "Hangouts", "ICQ", "Netflix",
	"SCP", "SFTP", "Skype", "Spotify", "Vimeo", "Voipbuster", "Youtube",
}

var trafficNames = [NumTraffic]string{
	"Chat", "Email", "File Transfer", "Streaming", "Voip",
	"VPN: Chat", "VPN: File Transfer", "VPN: Email", "VPN: Streaming", "VPN: Torrent", "VPN: Voip",
}

// AppName is the reference's name of application id, or "app <id>".
func AppName(id int) string {
	if id >= 0 && id < NumApps {
		return appNames[id]
	}
	return fmt.Sprintf("app %d", id)
}

// TrafficName is the reference's name of traffic id, or "traffic <id>".
func TrafficName(id int) string {
	if id >= 0 && id < NumTraffic {
		return trafficNames[id]
	}
	return fmt.Sprintf("traffic %d", id)
}

// The built-in maps are the reference's current utils.py (Deep-Packet
// commit 7e19bb44): PREFIX_TO_APP_ID and PREFIX_TO_TRAFFIC_ID. VPN captures
// have a traffic id only, as there.
var builtinApp = map[string]int64{
	"aim_chat_3a": 0, "aim_chat_3b": 0, "aimchat1": 0, "aimchat2": 0,
	"email1a": 1, "email1b": 1, "email2a": 1, "email2b": 1,
	"facebook_audio1a": 2, "facebook_audio1b": 2, "facebook_audio2a": 2, "facebook_audio2b": 2, "facebook_audio3": 2, "facebook_audio4": 2, "facebook_chat_4a": 2, "facebook_chat_4b": 2, "facebook_video1a": 2, "facebook_video1b": 2, "facebook_video2a": 2, "facebook_video2b": 2, "facebookchat1": 2, "facebookchat2": 2, "facebookchat3": 2,
	"ftps_down_1a": 3, "ftps_down_1b": 3, "ftps_up_2a": 3, "ftps_up_2b": 3,
	"gmailchat1": 4, "gmailchat2": 4, "gmailchat3": 4,
	"hangout_chat_4b": 5, "hangouts_audio1a": 5, "hangouts_audio1b": 5, "hangouts_audio2a": 5, "hangouts_audio2b": 5, "hangouts_audio3": 5, "hangouts_audio4": 5, "hangouts_chat_4a": 5, "hangouts_video1b": 5, "hangouts_video2a": 5, "hangouts_video2b": 5,
	"icq_chat_3a": 6, "icq_chat_3b": 6, "icqchat1": 6, "icqchat2": 6,
	"netflix1": 7, "netflix2": 7, "netflix3": 7, "netflix4": 7,
	"scp1": 8, "scpdown1": 8, "scpdown2": 8, "scpdown3": 8, "scpdown4": 8, "scpdown5": 8, "scpdown6": 8, "scpup1": 8, "scpup2": 8, "scpup3": 8, "scpup5": 8, "scpup6": 8,
	"sftp1": 9, "sftp_down_3a": 9, "sftp_down_3b": 9, "sftp_up_2a": 9, "sftp_up_2b": 9, "sftpdown1": 9, "sftpdown2": 9, "sftpup1": 9,
	"skype_audio1a": 10, "skype_audio1b": 10, "skype_audio2a": 10, "skype_audio2b": 10, "skype_audio3": 10, "skype_audio4": 10, "skype_chat1a": 10, "skype_chat1b": 10, "skype_file1": 10, "skype_file2": 10, "skype_file3": 10, "skype_file4": 10, "skype_file5": 10, "skype_file6": 10, "skype_file7": 10, "skype_file8": 10, "skype_video1a": 10, "skype_video1b": 10, "skype_video2a": 10, "skype_video2b": 10,
	"spotify1": 11, "spotify2": 11, "spotify3": 11, "spotify4": 11,
	"vimeo1": 12, "vimeo2": 12, "vimeo3": 12, "vimeo4": 12,
	"voipbuster1b": 13, "voipbuster2b": 13, "voipbuster3b": 13, "voipbuster_4a": 13, "voipbuster_4b": 13,
	"youtube1": 14, "youtube2": 14, "youtube3": 14, "youtube4": 14, "youtube5": 14, "youtube6": 14, "youtubehtml5_1": 14,
}

var builtinTraffic = map[string]int64{
	// Chat
	"aim_chat_3a": 0, "aim_chat_3b": 0, "aimchat1": 0, "aimchat2": 0, "facebook_chat_4a": 0, "facebook_chat_4b": 0,
	"facebookchat1": 0, "facebookchat2": 0, "facebookchat3": 0, "gmailchat1": 0, "gmailchat2": 0, "gmailchat3": 0,
	"hangout_chat_4b": 0, "hangouts_chat_4a": 0, "icq_chat_3a": 0, "icq_chat_3b": 0, "icqchat1": 0, "icqchat2": 0,
	"skype_chat1a": 0, "skype_chat1b": 0,
	// Email
	"email1a": 1, "email1b": 1, "email2a": 1, "email2b": 1,
	// File Transfer
	"ftps_down_1a": 2, "ftps_down_1b": 2, "ftps_up_2a": 2, "ftps_up_2b": 2, "scp1": 2, "scpdown1": 2, "scpdown2": 2,
	"scpdown3": 2, "scpdown4": 2, "scpdown5": 2, "scpdown6": 2, "scpup1": 2, "scpup2": 2, "scpup3": 2, "scpup5": 2,
	"scpup6": 2, "sftp1": 2, "sftp_down_3a": 2, "sftp_down_3b": 2, "sftp_up_2a": 2, "sftp_up_2b": 2, "sftpdown1": 2,
	"sftpdown2": 2, "sftpup1": 2, "skype_file1": 2, "skype_file2": 2, "skype_file3": 2, "skype_file4": 2,
	"skype_file5": 2, "skype_file6": 2, "skype_file7": 2, "skype_file8": 2,
	// Streaming
	"netflix1": 3, "netflix2": 3, "netflix3": 3, "netflix4": 3, "spotify1": 3, "spotify2": 3, "spotify3": 3,
	"spotify4": 3, "vimeo1": 3, "vimeo2": 3, "vimeo3": 3, "vimeo4": 3, "youtube1": 3, "youtube2": 3, "youtube3": 3,
	"youtube4": 3, "youtube5": 3, "youtube6": 3, "youtubehtml5_1": 3,
	// VoIP
	"facebook_audio1a": 4, "facebook_audio1b": 4, "facebook_audio2a": 4, "facebook_audio2b": 4, "facebook_audio3": 4,
	"facebook_audio4": 4, "facebook_video1a": 4, "facebook_video1b": 4, "facebook_video2a": 4, "facebook_video2b": 4,
	"hangouts_audio1a": 4, "hangouts_audio1b": 4, "hangouts_audio2a": 4, "hangouts_audio2b": 4, "hangouts_audio3": 4,
	"hangouts_audio4": 4, "hangouts_video1b": 4, "hangouts_video2a": 4, "hangouts_video2b": 4, "skype_audio1a": 4,
	"skype_audio1b": 4, "skype_audio2a": 4, "skype_audio2b": 4, "skype_audio3": 4, "skype_audio4": 4,
	"skype_video1a": 4, "skype_video1b": 4, "skype_video2a": 4, "skype_video2b": 4, "voipbuster1b": 4,
	"voipbuster2b": 4, "voipbuster3b": 4, "voipbuster_4a": 4, "voipbuster_4b": 4,
	// VPN: Chat
	"vpn_aim_chat1a": 5, "vpn_aim_chat1b": 5, "vpn_facebook_chat1a": 5, "vpn_facebook_chat1b": 5,
	"vpn_hangouts_chat1a": 5, "vpn_hangouts_chat1b": 5, "vpn_icq_chat1a": 5, "vpn_icq_chat1b": 5,
	"vpn_skype_chat1a": 5, "vpn_skype_chat1b": 5,
	// VPN: File Transfer
	"vpn_ftps_a": 6, "vpn_ftps_b": 6, "vpn_sftp_a": 6, "vpn_sftp_b": 6, "vpn_skype_files1a": 6, "vpn_skype_files1b": 6,
	// VPN: Email
	"vpn_email2a": 7, "vpn_email2b": 7,
	// VPN: Streaming
	"vpn_netflix_a": 8, "vpn_spotify_a": 8, "vpn_vimeo_a": 8, "vpn_vimeo_b": 8, "vpn_youtube_a": 8,
	// VPN: Torrent
	"vpn_bittorrent": 9,
	// VPN: VoIP
	"vpn_facebook_audio2": 10, "vpn_hangouts_audio1": 10, "vpn_hangouts_audio2": 10, "vpn_skype_audio1": 10,
	"vpn_skype_audio2": 10, "vpn_voipbuster1a": 10, "vpn_voipbuster1b": 10,
}

// Labels are the labels of one capture; nil means none for that task.
type Labels struct {
	App, Traffic *int64
}

// None reports whether the capture has no label for either task.
func (l Labels) None() bool { return l.App == nil && l.Traffic == nil }

// Map maps capture names to labels.
type Map struct {
	app, traffic map[string]int64
}

// Builtin returns the reference's own maps.
func Builtin() *Map { return &Map{app: builtinApp, traffic: builtinTraffic} }

// Stem is the reference's key for a capture: its file name, lower-cased, up
// to the first dot.
func Stem(path string) string {
	name := strings.ToLower(filepath.Base(path))
	stem, _, _ := strings.Cut(name, ".")
	return stem
}

// Lookup returns the labels of the capture at path, looking its stem up
// exactly, as the reference does.
func (m *Map) Lookup(path string) Labels {
	stem := Stem(path)
	var l Labels
	if id, ok := m.app[stem]; ok {
		l.App = &id
	}
	if id, ok := m.traffic[stem]; ok {
		l.Traffic = &id
	}
	return l
}

// Load reads a user's map from a TSV file: stem, application id, traffic
// id, one capture a line; an empty id means no label for that task, and
// lines starting with # are comments. It replaces the built-in map.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read labels %s: %w", path, err)
	}
	defer f.Close()
	m, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("read labels %s: %w", path, err)
	}
	return m, nil
}

// Parse reads a TSV map (see Load).
func Parse(r io.Reader) (*Map, error) {
	m := &Map{app: map[string]int64{}, traffic: map[string]int64{}}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) != 3 {
			return nil, fmt.Errorf("line %d: %d columns, want 3 (stem, app id, traffic id)", line, len(cols))
		}
		stem := strings.ToLower(strings.TrimSpace(cols[0]))
		if stem == "" {
			return nil, fmt.Errorf("line %d: empty stem", line)
		}
		if _, dup := m.app[stem]; dup {
			return nil, fmt.Errorf("line %d: stem %q given twice", line, stem)
		}
		if _, dup := m.traffic[stem]; dup {
			return nil, fmt.Errorf("line %d: stem %q given twice", line, stem)
		}
		for i, dst := range []map[string]int64{m.app, m.traffic} {
			v := strings.TrimSpace(cols[i+1])
			if v == "" {
				continue
			}
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id < 0 {
				return nil, fmt.Errorf("line %d: label %q is not a non-negative integer", line, v)
			}
			dst[stem] = id
		}
	}
	return m, sc.Err()
}
