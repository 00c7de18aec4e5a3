package importer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/govisor/govisor/internal/vmimport/hyperv"
)

// hypervConfig finds the configuration XML of a Hyper-V export: path
// itself, or the one file in path/Virtual Machines/.
func hypervConfig(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	if !fi.IsDir() {
		if strings.EqualFold(filepath.Ext(path), ".vmcx") {
			return "", fmt.Errorf("import: %s: %w", path, hyperv.ErrVMCX)
		}
		return path, nil
	}
	dir := filepath.Join(path, "Virtual Machines")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("import: %s is not a Hyper-V export folder: %w", path, err)
	}
	var xmls []string
	vmcx := false
	for _, e := range ents {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".xml":
			xmls = append(xmls, filepath.Join(dir, e.Name()))
		case ".vmcx":
			vmcx = true
		}
	}
	switch {
	case len(xmls) == 1:
		return xmls[0], nil
	case len(xmls) > 1:
		return "", fmt.Errorf("import: %s holds %d VM configurations: give one of them", dir, len(xmls))
	case vmcx:
		return "", fmt.Errorf("import: %s: %w", dir, hyperv.ErrVMCX)
	}
	return "", fmt.Errorf("import: %s holds no VM configuration (.xml)", dir)
}

// hypervResolver finds a drive the configuration names by its source
// host's Windows path: by file name in the export's "Virtual Hard Disks"
// folder, else next to the configuration.
func hypervResolver(cfg string) func(string) (string, error) {
	export := filepath.Dir(filepath.Dir(cfg))
	return func(name string) (string, error) {
		base := name[strings.LastIndexAny(name, `\/`)+1:]
		if base == "" || base == "." || base == ".." {
			return "", fmt.Errorf("drive path %q names no file", name)
		}
		for _, dir := range []string{filepath.Join(export, "Virtual Hard Disks"), filepath.Dir(cfg), export} {
			p := filepath.Join(dir, base)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("drive %s: no %s in %s", name, base, filepath.Join(export, "Virtual Hard Disks"))
	}
}
