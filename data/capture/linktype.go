package capture

import "github.com/gopacket/gopacket/layers"

// linkTypeNames names link types gopacket leaves unnamed, from the
// tcpdump.org list, so that a refusal says what a capture holds.
var linkTypeNames = map[layers.LinkType]string{
	50: "PPP_HDLC", 104: "C_HDLC", 105: "IEEE802_11", 113: "LINUX_SLL", 119: "PRISM_HEADER",
	127: "IEEE802_11_RADIOTAP", 192: "PPI", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
	242: "IPOIB", 258: "PKTAP", 271: "VSOCK", 276: "LINUX_SLL2",
}

// LinkTypeName is the tcpdump.org name of a link type, or "unknown".
func LinkTypeName(lt layers.LinkType) string {
	if n, ok := linkTypeNames[lt]; ok {
		return n
	}
	if s := lt.String(); s != "UnknownLinkType" {
		return s
	}
	return "unknown"
}
