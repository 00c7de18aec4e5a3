// Package ovatest builds OVA archives for tests of the code that reads
// them (ova.Unpack, the importer), member by member as a hostile or
// foreign tool may lay them out, and lists what such code left behind.
package ovatest

import (
	"archive/tar"
	"bytes"
	"os"
	"testing"
)

// Member is one file of an archive, stored under Name as given (which
// may be "../x" or "a/b": the archive is the test's to make wrong).
type Member struct {
	Name string
	Data []byte
}

// WriteTar writes the members, in order, as a tar at path.
func WriteTar(t testing.TB, path string, members ...Member) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Names lists the entries of dir: what an unpack or import left there.
func Names(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
