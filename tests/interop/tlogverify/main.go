// Command tlogverify is an independent check of HoneyMesh Hub checkpoints and
// Merkle proofs (PROTOCOL.md section 15) with Go's golang.org/x/mod/sumdb/note
// and golang.org/x/mod/sumdb/tlog.
//
// It reads one JSON object on stdin:
//
//	{"verifier_key": "...", "note": "<signed checkpoint>",
//	 "inclusion": [{"index": i, "size": n, "leaf": "<b64>", "root": "<b64, if n is not the checkpoint size>", "hashes": ["<b64>", ...]}],
//	 "consistency": [{"from": m, "to": n, "root_from": "<b64>", "root_to": "<b64>", "hashes": ["<b64>", ...]}]}
//
// and prints {"ok": true, "origin": ..., "size": ..., "root": "<b64>"}, or
// exits 1 with the reason on stderr.
//
// Build offline in GOPATH mode against Debian's golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(mktemp -d) go build -o tlogverify main.go
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index  int64    `json:"index"`
	Size   int64    `json:"size"`
	Leaf   string   `json:"leaf"`
	Root   string   `json:"root"`
	Hashes []string `json:"hashes"`
}

type consistency struct {
	From     int64    `json:"from"`
	To       int64    `json:"to"`
	RootFrom string   `json:"root_from"`
	RootTo   string   `json:"root_to"`
	Hashes   []string `json:"hashes"`
}

type request struct {
	VerifierKey string        `json:"verifier_key"`
	Note        string        `json:"note"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

type result struct {
	OK     bool   `json:"ok"`
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

var decimal = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

func decodeHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return h, err
	}
	if len(raw) != tlog.HashSize {
		return h, fmt.Errorf("a hash is %d bytes, not %d", tlog.HashSize, len(raw))
	}
	copy(h[:], raw)
	return h, nil
}

func decodeHashes(list []string) ([]tlog.Hash, error) {
	hashes := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := decodeHash(s)
		if err != nil {
			return nil, fmt.Errorf("hash %d: %v", i, err)
		}
		hashes[i] = h
	}
	return hashes, nil
}

// parseCheckpoint reads a tlog-checkpoint body (https://c2sp.org/tlog-checkpoint).
func parseCheckpoint(text string) (checkpoint, error) {
	var cp checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		return cp, errors.New("checkpoint: want origin, size and root lines")
	}
	for _, line := range lines[3:] {
		if line == "" {
			return cp, errors.New("checkpoint: empty extension line")
		}
	}
	if !decimal.MatchString(lines[1]) {
		return cp, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return cp, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	root, err := decodeHash(lines[2])
	if err != nil {
		return cp, fmt.Errorf("checkpoint: bad root: %v", err)
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// rootFor is the root of the tree of `size` leaves: the checkpoint's when the
// sizes match (a given root must then agree), else the given one.
func rootFor(cp checkpoint, size int64, given string) (tlog.Hash, error) {
	if given == "" {
		if size != cp.size {
			return tlog.Hash{}, fmt.Errorf("no root given for size %d", size)
		}
		return cp.root, nil
	}
	h, err := decodeHash(given)
	if err != nil {
		return h, err
	}
	if size == cp.size && h != cp.root {
		return h, fmt.Errorf("root for size %d is not the checkpoint's", size)
	}
	return h, nil
}

func run(in io.Reader) (result, error) {
	var req request
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return result{}, fmt.Errorf("request: %v", err)
	}
	verifier, err := note.NewVerifier(req.VerifierKey)
	if err != nil {
		return result{}, fmt.Errorf("verifier key: %v", err)
	}
	n, err := note.Open([]byte(req.Note), note.VerifierList(verifier))
	if err != nil {
		return result{}, fmt.Errorf("note: %v", err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return result{}, err
	}
	for i, p := range req.Inclusion {
		root, err := rootFor(cp, p.Size, p.Root)
		if err != nil {
			return result{}, fmt.Errorf("inclusion %d: %v", i, err)
		}
		leaf, err := base64.StdEncoding.DecodeString(p.Leaf)
		if err != nil {
			return result{}, fmt.Errorf("inclusion %d: leaf: %v", i, err)
		}
		proof, err := decodeHashes(p.Hashes)
		if err != nil {
			return result{}, fmt.Errorf("inclusion %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, p.Size, root, p.Index, tlog.RecordHash(leaf)); err != nil {
			return result{}, fmt.Errorf("inclusion %d (index %d, size %d): %v", i, p.Index, p.Size, err)
		}
	}
	for i, p := range req.Consistency {
		rootFrom, err := rootFor(cp, p.From, p.RootFrom)
		if err != nil {
			return result{}, fmt.Errorf("consistency %d: root_from: %v", i, err)
		}
		rootTo, err := rootFor(cp, p.To, p.RootTo)
		if err != nil {
			return result{}, fmt.Errorf("consistency %d: root_to: %v", i, err)
		}
		proof, err := decodeHashes(p.Hashes)
		if err != nil {
			return result{}, fmt.Errorf("consistency %d: %v", i, err)
		}
		if err := tlog.CheckTree(proof, p.To, rootTo, p.From, rootFrom); err != nil {
			return result{}, fmt.Errorf("consistency %d (%d to %d): %v", i, p.From, p.To, err)
		}
	}
	return result{OK: true, Origin: cp.origin, Size: cp.size, Root: base64.StdEncoding.EncodeToString(cp.root[:])}, nil
}

func main() {
	res, err := run(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlogverify:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "tlogverify:", err)
		os.Exit(1)
	}
}
