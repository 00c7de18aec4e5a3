package vmdk

import (
	"fmt"

	"github.com/govisor/govisor/internal/diskimage"
)

func init() {
	diskimage.Register(diskimage.Driver{
		Name:   FormatName,
		Probe:  Probe,
		Open:   diskimage.OpenAs(OpenWith),
		Create: diskimage.CreateAs(parseOptions, Create),
	})
}

// parseOptions maps registry options (-o subformat=...) onto
// CreateOptions.
func parseOptions(opts diskimage.CreateOptions) (CreateOptions, error) {
	var co CreateOptions
	// Create checks the subformat: it names the ones it writes.
	subformat := diskimage.CreateOption{Key: "subformat", Want: "subformat=monolithicSparse|streamOptimized", Set: func(v string) bool {
		co.Subformat = v
		return true
	}}
	err := diskimage.ApplyCreateOptions(FormatName, opts, subformat)
	return co, err
}

// Info describes the open image for `govisor image info`.
func (img *Image) Info() diskimage.Info {
	info := diskimage.Info{Format: FormatName, Subformat: img.desc.CreateType, VirtualSize: img.size, ReadOnly: img.readOnly}
	for _, e := range img.exts {
		switch e := e.(type) {
		case *sparseExtent:
			info.ClusterSize = e.grainBytes
			info.Dirty = info.Dirty || e.hdr.UncleanShutdown
			info.ActualSize += allocatedBytes(e.f)
		case *esxExtent:
			info.ClusterSize = e.grainBytes
			info.Dirty = info.Dirty || e.dirty
			info.ActualSize += allocatedBytes(e.f)
		case *flatExtent:
			info.ActualSize += allocatedBytes(e.f)
		}
	}
	if img.stream != nil {
		info.ClusterSize = streamGrainBytes
	}
	img.chainInfo(&info)
	return info
}

// chainInfo fills the backing fields of info for a differencing disk: the
// parent it opened, or only the name its descriptor gives (NoBacking).
func (img *Image) chainInfo(info *diskimage.Info) {
	if img.desc == nil || checkParent(img.desc) == nil {
		return
	}
	if img.parent == nil {
		info.BackingFile = img.desc.ParentFileNameHint
		return
	}
	info.BackingFile = img.parentPath
	info.BackingChain = diskimage.BackingChain(img.parentPath, img.parent)
}

// ClusterSize is the grain size: the unit converters align writes to.
func (img *Image) ClusterSize() int64 {
	if img.stream != nil {
		return streamGrainBytes
	}
	for _, e := range img.exts {
		switch e := e.(type) {
		case *sparseExtent:
			return e.grainBytes
		case *esxExtent:
			return e.grainBytes
		}
	}
	return sectorSize
}

// CompressedClusterSize is the grain size of a streamOptimized image being
// created.
func (img *Image) CompressedClusterSize() int64 { return streamGrainBytes }

// WriteCompressed stores a grain compressed. Only streamOptimized images
// being created store compressed grains (they compress every grain, so this
// is WriteAt); other subformats refuse with diskimage.ErrUnsupported.
func (img *Image) WriteCompressed(data []byte, off int64) error {
	if img.stream == nil {
		return fmt.Errorf("vmdk: %w: compressed grains in %s images (use subformat=streamOptimized)", diskimage.ErrUnsupported, img.desc.CreateType)
	}
	_, err := img.WriteAt(data, off)
	return err
}
