package disklease

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fast are test timings: the same ratios as the defaults, 10x shorter (50x
// shorter lost leases on a loaded 2-core machine: 60 ms without a renewal).
var fast = Options{Renew: 100 * time.Millisecond, FenceAfter: 300 * time.Millisecond, Expire: 600 * time.Millisecond}

var (
	a = Owner{Host: "lab1", VM: "web"}
	b = Owner{Host: "lab2", VM: "web"}
)

func disk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "web.qcow2")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustAcquire(t *testing.T, d string, o Owner) *Lease {
	t.Helper()
	l, err := Acquire(context.Background(), d, o, fast)
	if err != nil {
		t.Fatalf("Acquire for %s: %v", o, err)
	}
	return l
}

// crash stops renewing without releasing, as a killed VMM does.
func (l *Lease) crash() {
	close(l.stop)
	l.done.Wait()
	l.f.close()
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{},
		{Gen: 7, Nonce: 99, Written: time.Unix(0, 1234), Owner: a},
		{Gen: 1<<64 - 1, Nonce: 1, Written: time.Unix(1700000000, 5), Released: true, Owner: Owner{strings.Repeat("h", maxName), strings.Repeat("v", maxName)}},
	} {
		buf := make([]byte, recordSize)
		if err := r.encode(buf); err != nil {
			t.Fatal(err)
		}
		got, err := decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got.Gen != r.Gen || got.Nonce != r.Nonce || !got.Written.Equal(r.Written) || got.Released != r.Released || got.Owner != r.Owner {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
	if err := (Record{Owner: Owner{strings.Repeat("h", maxName+1), "v"}}).encode(make([]byte, recordSize)); err == nil {
		t.Error("a host name over 255 bytes was encoded")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := make([]byte, recordSize)
	(Record{Gen: 1, Nonce: 3, Owner: a}).encode(good)
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"short":     good[:100],
		"magic":     mut(func(b []byte) { b[0] = 'X' }),
		"checksum":  mut(func(b []byte) { b[40]++ }),
		"torn half": append(bytes.Clone(good[:2048]), make([]byte, 2048)...),
	} {
		if _, err := decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good := make([]byte, recordSize)
	(Record{Gen: 1, Nonce: 3, Owner: a}).encode(good)
	f.Add(good)
	f.Add([]byte("GVLEASE\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same record.
		buf := make([]byte, recordSize)
		if err := r.encode(buf); err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		r2, err := decode(buf)
		if err != nil || r2.Owner != r.Owner || r2.Gen != r.Gen || r2.Nonce != r.Nonce || r2.Released != r.Released {
			t.Fatalf("re-decoded %+v (%v), want %+v", r2, err, r)
		}
	})
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{Renew: time.Second, FenceAfter: time.Second},
		{Renew: time.Second, FenceAfter: 3 * time.Second, Expire: 3 * time.Second},
		{Renew: -time.Second},
		{Renew: time.Second, FenceAfter: 3 * time.Second, Settle: 2 * time.Second},
	} {
		if _, err := Acquire(context.Background(), disk(t), a, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := Acquire(context.Background(), disk(t), Owner{Host: "h"}, fast); err == nil {
		t.Error("an owner without a VM name was accepted")
	}
}

// A free lease is claimed at once; while it is renewed nobody else gets
// it, and once released the next owner claims it without waiting.
func TestHeldThenReleased(t *testing.T) {
	d := disk(t)
	la := mustAcquire(t, d, a)
	t0 := time.Now()
	_, err := Acquire(context.Background(), d, b, fast)
	var held *HeldError
	if !errors.As(err, &held) || held.Owner != a {
		t.Fatalf("second owner: err %v, want HeldError naming %s", err, a)
	}
	if !strings.Contains(err.Error(), "lab1") || !strings.Contains(err.Error(), "stop that VM first") {
		t.Errorf("error does not name the holder and the fix: %v", err)
	}
	if el := time.Since(t0); el > fast.Expire {
		t.Logf("refusal took %v (a renewal should show within %v)", el, fast.Renew)
	}
	r, err := Inspect(d)
	if err != nil || r.Owner != a || r.Released {
		t.Fatalf("Inspect while held: %+v %v", r, err)
	}
	if err := la.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, _ := Inspect(d); !r.Released {
		t.Errorf("record after Release: %+v", r)
	}
	lb := mustAcquire(t, d, b)
	defer lb.Release(context.Background())
	if la.Release(context.Background()) == nil {
		t.Error("a second Release succeeded")
	}
	select {
	case <-lb.Lost():
		t.Fatalf("lease lost: %v", lb.Err())
	case <-time.After(5 * fast.Renew):
	}
}

// A holder that died (no renewal, no release) loses its lease to the next
// owner after Expire; the same owner (its VM restarted on the same host)
// gets it back at once.
func TestDeadHolder(t *testing.T) {
	d := disk(t)
	mustAcquire(t, d, a).crash()
	t0 := time.Now()
	la := mustAcquire(t, d, a)
	if el := time.Since(t0); el >= fast.Expire {
		t.Errorf("the same owner waited %v: it should not watch the lease", el)
	}
	la.crash()
	t0 = time.Now()
	lb := mustAcquire(t, d, b)
	defer lb.Release(context.Background())
	if el := time.Since(t0); el < fast.Expire {
		t.Errorf("a dead holder's lease was taken after %v, before Expire %v", el, fast.Expire)
	}
}

// A holder whose record was replaced (a host that lost the lease while
// partitioned) finds out at its next renewal.
func TestTakenOver(t *testing.T) {
	d := disk(t)
	la := mustAcquire(t, d, a)
	f, err := openLeaseFile(Path(d))
	if err != nil {
		t.Fatal(err)
	}
	f.write(Record{Gen: 1000, Nonce: 5, Owner: b})
	f.close()
	select {
	case <-la.Lost():
		if !strings.Contains(la.Err().Error(), "taken over by web on host lab2") {
			t.Errorf("Err: %v", la.Err())
		}
	case <-time.After(time.Second):
		t.Fatal("the holder did not notice the takeover")
	}
	if err := la.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, _ := Inspect(d); r.Owner != b || r.Released {
		t.Errorf("a lost lease's Release changed the new owner's record: %+v", r)
	}
}

// A holder that cannot renew (the storage went away) loses the lease after
// FenceAfter, before anyone else may take it.
func TestRenewalFailureFences(t *testing.T) {
	d := disk(t)
	la := mustAcquire(t, d, a)
	la.mu.Lock()
	la.f.f.Close() // every read and write fails from now on
	la.mu.Unlock()
	t0 := time.Now()
	select {
	case <-la.Lost():
	case <-time.After(time.Second):
		t.Fatal("not lost a second after renewals began to fail")
	}
	el := time.Since(t0)
	if !strings.Contains(la.Err().Error(), "not renewed") {
		t.Errorf("Err: %v", la.Err())
	}
	if el >= fast.Expire {
		t.Errorf("lost after %v: not before Expire %v", el, fast.Expire)
	}
}

// Owners claiming a free lease at the same moment: never two hold it once
// their claims settled (a claim that landed too late is refused, and may
// cost the winner its lease: no holder is safe, two are not).
func TestConcurrentClaims(t *testing.T) {
	o := Options{Renew: 20 * time.Millisecond, FenceAfter: 200 * time.Millisecond, Expire: 400 * time.Millisecond, Settle: 100 * time.Millisecond}
	someWon := false
	for i := 0; i < 10; i++ {
		d := disk(t)
		var wg sync.WaitGroup
		leases := make([]*Lease, 4)
		errs := make([]error, 4)
		for j := range leases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leases[j], errs[j] = Acquire(context.Background(), d, Owner{Host: string(rune('a' + j)), VM: "web"}, o)
			}()
		}
		wg.Wait()
		time.Sleep(3 * o.Renew) // a holder whose claim was overwritten notices
		won := 0
		for j, l := range leases {
			if l == nil {
				var held *HeldError
				if !errors.As(errs[j], &held) && !strings.Contains(errs[j].Error(), "too slow") {
					t.Errorf("loser %d: %v", j, errs[j])
				}
				continue
			}
			if l.Err() == nil {
				won++
			}
			l.Release(context.Background())
		}
		if won > 1 {
			t.Fatalf("round %d: %d owners hold the lease", i, won)
		}
		someWon = someWon || won == 1
	}
	if !someWon {
		t.Error("no round had a winner")
	}
}

// Transfer and Adopt hand a lease over without waiting (a migration).
func TestTransferAdopt(t *testing.T) {
	d := disk(t)
	la := mustAcquire(t, d, a)
	nonce := NewNonce()
	if _, err := Adopt(context.Background(), d, b, nonce, fast); err == nil {
		t.Fatal("adopted a lease that was not handed over")
	}
	if err := la.Transfer(context.Background(), b, nonce); err != nil {
		t.Fatal(err)
	}
	lb, err := Adopt(context.Background(), d, b, nonce, fast)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-lb.Lost():
		t.Fatalf("adopted lease lost: %v", lb.Err())
	case <-time.After(5 * fast.Renew):
	}
	if r, _ := Inspect(d); r.Owner != b || r.Gen < 3 {
		t.Errorf("record after adoption: %+v", r)
	}
	lb.Release(context.Background())
}
