package qcow2

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"

	"github.com/govisor/govisor/internal/diskimage"
)

// createParams are the settings of a new image.
type createParams struct {
	version       uint32
	clusterBits   uint32
	refcountOrder uint32
	lazy          bool
	compression   uint8
}

// parseCreateOptions reads qemu-img's option names: compat (0.10 or 1.1),
// cluster_size, refcount_bits, lazy_refcounts, compression_type.
func parseCreateOptions(o map[string]string) (createParams, error) {
	p := createParams{version: 3, clusterBits: 16, refcountOrder: 4}
	for k, v := range o {
		switch k {
		case "compat":
			switch v {
			case "0.10", "v2", "2":
				p.version = 2
			case "1.1", "v3", "3":
				p.version = 3
			default:
				return p, fmt.Errorf("qcow2: compat %q: use 0.10 or 1.1", v)
			}
		case "cluster_size":
			n, err := diskimage.ParseSize(v)
			if err != nil || n <= 0 || n&(n-1) != 0 || n < 1<<minClusterBits || n > 1<<maxClusterBits {
				return p, fmt.Errorf("qcow2: cluster_size %q: use a power of two from 512 to 2M", v)
			}
			p.clusterBits = uint32(bits.TrailingZeros64(uint64(n)))
		case "refcount_bits":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 64 || n&(n-1) != 0 {
				return p, fmt.Errorf("qcow2: refcount_bits %q: use a power of two from 1 to 64", v)
			}
			p.refcountOrder = uint32(bits.TrailingZeros(uint(n)))
		case "lazy_refcounts":
			p.lazy = v == "on" || v == "true" || v == ""
		case "compression_type":
			switch v {
			case "zlib":
				p.compression = compZlib
			case "zstd":
				p.compression = compZstd
			default:
				return p, fmt.Errorf("qcow2: compression_type %q: use zlib or zstd", v)
			}
		case "extended_l2":
			if v == "on" {
				return p, fmt.Errorf("%w: creating images with extended L2 entries", errUnsupported)
			}
		case "preallocation":
			if v != "off" {
				return p, fmt.Errorf("%w: preallocation=%s", errUnsupported, v)
			}
		default:
			return p, fmt.Errorf("%w: qcow2 option %q", errUnsupported, k)
		}
	}
	if p.version == 2 && (p.refcountOrder != 4 || p.lazy || p.compression != 0) {
		return p, fmt.Errorf("qcow2: refcount_bits, lazy_refcounts and compression_type need compat=1.1")
	}
	return p, nil
}

// Create makes an empty qcow2 image of size bytes at path.
func Create(path string, size int64, opts diskimage.CreateOptions) (diskimage.Image, error) {
	p, err := parseCreateOptions(opts.Options)
	if err != nil {
		return nil, err
	}
	if opts.BackingFile != "" {
		// Fail now, not at first use, if the backing file cannot be opened.
		b, err := diskimage.Open(diskimage.ResolveBacking(path, opts.BackingFile),
			diskimage.OpenOptions{Format: opts.BackingFormat, ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("qcow2: backing file: %w", err)
		}
		b.Close()
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	b := fileBackend{f}
	if err := format(b, size, p, opts); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	m, err := openBackend(b, path, diskimage.OpenOptions{})
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return m, nil
}

// format writes a new image's metadata: header in cluster 0, then the
// refcount table, the refcount blocks covering all of the metadata, and
// the L1 table, everything zero but the refcounts of these clusters.
func format(b backend, size int64, p createParams, opts diskimage.CreateOptions) error {
	if size < 0 || size > maxVirtualSize {
		return fmt.Errorf("qcow2: invalid size %d", size)
	}
	cs := uint64(1) << p.clusterBits
	l2Entries := cs / 8
	l1Size := (uint64(size) + cs*l2Entries - 1) / (cs * l2Entries)
	if l1Size*8 > maxL1Bytes {
		return fmt.Errorf("qcow2: size %d needs an L1 table over %d bytes: use a larger cluster_size", size, maxL1Bytes)
	}
	l1Clusters := max(1, (l1Size*8+cs-1)/cs)
	rbEntries := cs * 8 >> p.refcountOrder
	// Find how many refcount blocks and table clusters cover themselves
	// plus the header and L1 table.
	var rbc, rtc uint64 = 1, 1
	for {
		total := 1 + rtc + rbc + l1Clusters
		nrbc := (total + rbEntries - 1) / rbEntries
		nrtc := (nrbc*8 + cs - 1) / cs
		if nrbc == rbc && nrtc == rtc {
			break
		}
		rbc, rtc = nrbc, nrtc
	}
	if rtc*cs > maxRefTableBytes {
		return fmt.Errorf("qcow2: size %d too large for cluster_size %d", size, cs)
	}
	h := &header{
		version: p.version, clusterBits: p.clusterBits, size: uint64(size),
		l1Size: uint32(l1Size), l1Off: (1 + rtc + rbc) * cs,
		rtOff: cs, rtClusters: uint32(rtc), refcountOrder: p.refcountOrder,
		compressionType: p.compression,
		backingFile:     opts.BackingFile, backingFormat: opts.BackingFormat,
	}
	if p.lazy {
		h.compat |= compatLazyRefcounts
	}
	if p.compression != 0 {
		h.incompat |= incCompression
	}
	hdr, err := h.marshal(int(cs))
	if err != nil {
		return err
	}
	total := 1 + rtc + rbc + l1Clusters
	meta := make([]byte, total*cs)
	copy(meta, hdr)
	for i := uint64(0); i < rbc; i++ {
		putBE64(meta[cs+8*i:], (1+rtc+i)*cs)
	}
	blocks := meta[(1+rtc)*cs : (1+rtc+rbc)*cs]
	for c := uint64(0); c < total; c++ {
		setRef(blocks, c, p.refcountOrder, 1)
	}
	if _, err := b.WriteAt(meta, 0); err != nil {
		return fmt.Errorf("qcow2: write new image: %w", err)
	}
	if err := b.Sync(); err != nil {
		return fmt.Errorf("qcow2: sync new image: %w", err)
	}
	return nil
}

func putBE64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (56 - 8*i))
	}
}
