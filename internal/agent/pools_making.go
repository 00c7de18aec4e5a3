package agent

import (
	"slices"
	"strings"
	"sync"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// makingVolume is a volume CreateVolume is converting: listed with its
// progress until it is in place (issue 14: the console's import progress
// bar).
type makingVolume struct {
	mu sync.Mutex
	v  api.Volume
}

// startMaking registers volume v of pool as being made; a volume of that
// name already being made is ErrExists. done unregisters it.
func (ps *poolService) startMaking(v api.Volume, total int64) (m *makingVolume, done func(), err error) {
	key := v.Pool + "/" + v.Name
	v.Progress = &api.VolumeProgress{TotalBytes: total}
	m = &makingVolume{v: v}
	if _, busy := ps.making.LoadOrStore(key, m); busy {
		return nil, nil, errf(store.ErrExists, "volume %s is being made in storage pool %s", v.Name, v.Pool)
	}
	return m, func() { ps.making.CompareAndDelete(key, m) }, nil
}

// progress records how far the conversion got (convert.Options.Progress).
func (m *makingVolume) progress(done, total int64) {
	m.mu.Lock()
	m.v.Progress = &api.VolumeProgress{DoneBytes: done, TotalBytes: total}
	m.mu.Unlock()
}

// volume is the volume as made so far.
func (m *makingVolume) volume() api.Volume {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.v
	p := *m.v.Progress
	v.Progress = &p
	return v
}

// makingIn lists the volumes of pool being made, by name.
func (ps *poolService) makingIn(pool string) []api.Volume {
	var out []api.Volume
	ps.making.Range(func(k, m any) bool {
		if strings.HasPrefix(k.(string), pool+"/") {
			out = append(out, m.(*makingVolume).volume())
		}
		return true
	})
	slices.SortFunc(out, func(x, y api.Volume) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// makingOne returns volume vol of pool if it is being made.
func (ps *poolService) makingOne(pool, vol string) (api.Volume, bool) {
	m, ok := ps.making.Load(pool + "/" + vol)
	if !ok {
		return api.Volume{}, false
	}
	return m.(*makingVolume).volume(), true
}
