// Command benchinput makes the input of `make bench-split`: preprocessed
// packet files holding a few million rows, made of real preprocessed packets
// (those of `deeppacket preprocess` on the ISCX captures) copied under new
// capture names, so that feature sizes, labels and flows are real ones.
//
//	go run ./data/split/internal/benchinput -from PREPROCESSED -o OUT -rows 4000000 -files 40
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/deeppacket/deeppacket/data/dataset"
)

func main() {
	from := flag.String("from", "", "folder of preprocessed packet files to copy")
	out := flag.String("o", "", "output folder")
	rows := flag.Int("rows", 4_000_000, "rows to write in all")
	files := flag.Int("files", 40, "files to spread them over")
	flag.Parse()
	if *from == "" || *out == "" || *files <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	paths, err := filepath.Glob(filepath.Join(*from, "*.parquet"))
	if err != nil || len(paths) == 0 {
		log.Fatalf("no packet files in %s", *from)
	}
	var packets []dataset.Packet
	for _, p := range paths {
		rows, err := dataset.ReadAllPackets(p)
		if err != nil {
			log.Fatal(err)
		}
		packets = append(packets, rows...)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	perFile := (*rows + *files - 1) / *files
	written := 0
	for f := 0; written < *rows; f++ {
		w, err := dataset.CreatePackets(filepath.Join(*out, fmt.Sprintf("capture-%03d.parquet", f)))
		if err != nil {
			log.Fatal(err)
		}
		// Each pass over the real packets is a new copy of their captures:
		// new source names, so new keys and new flows.
		for i := 0; i < perFile && written < *rows; i++ {
			p := packets[(f*perFile+i)%len(packets)]
			copyNo := (f*perFile + i) / len(packets)
			p.Source = fmt.Sprintf("copy%04d/%s", copyNo, p.Source)
			if err := w.Write(p); err != nil {
				log.Fatal(err)
			}
			written++
		}
		if err := w.Commit(); err != nil {
			log.Fatal(err)
		}
	}
}
