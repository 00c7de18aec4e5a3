package placement

// bitset is a set of small integers (host indexes, CPU feature numbers).
type bitset []uint64

// newBitset returns an empty set for n members.
func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

// set adds i.
func (b bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

// has says whether i is in the set.
func (b bitset) has(i int) bool { return i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0 }

// subsetOf says whether every member of b is in o.
func (b bitset) subsetOf(o bitset) bool {
	for i, w := range b {
		var ow uint64
		if i < len(o) {
			ow = o[i]
		}
		if w&^ow != 0 {
			return false
		}
	}
	return true
}
