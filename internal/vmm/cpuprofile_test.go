package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmm.prof")
	t.Setenv(EnvCPUProfile, path)
	var log bytes.Buffer
	stop := startCPUProfile(&log)
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	stop()
	stop() // a second call (the timer's) does nothing
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 || log.Len() != 0 {
		t.Fatalf("profile %v %v, log %q", fi, err, log.String())
	}

	// A bad duration is reported, the profile still taken.
	t.Setenv(EnvCPUProfileSeconds, "soon")
	stop = startCPUProfile(&log)
	stop()
	if !bytes.Contains(log.Bytes(), []byte(EnvCPUProfileSeconds)) {
		t.Fatalf("log %q", log.String())
	}

	// Without the variable nothing happens.
	t.Setenv(EnvCPUProfile, "")
	log.Reset()
	startCPUProfile(&log)()
	if log.Len() != 0 {
		t.Fatalf("log %q", log.String())
	}
}
