package cpuid

import "slices"

// Feature is one CPUID feature bit under the name Linux gives it in
// /proc/cpuinfo's "flags" (the cluster's CPU baseline is a list of them).
type Feature struct {
	Name string
	Bits Bits
}

// Leaves and sub-leaves of the feature table: CPUID.1, CPUID.7.0,
// CPUID.7.1, CPUID.0DH.1, CPUID.80000001H and CPUID.80000008H (Intel SDM
// vol. 2A, CPUID; AMD APM vol. 3, appendix E.3).
func f1c(name string, n uint) Feature  { return Feature{name, bit(1, 0, ECX, n)} }
func f1d(name string, n uint) Feature  { return Feature{name, bit(1, 0, EDX, n)} }
func f7b(name string, n uint) Feature  { return Feature{name, bit(7, 0, EBX, n)} }
func f7c(name string, n uint) Feature  { return Feature{name, bit(7, 0, ECX, n)} }
func f7d(name string, n uint) Feature  { return Feature{name, bit(7, 0, EDX, n)} }
func f71a(name string, n uint) Feature { return Feature{name, bit(7, 1, EAX, n)} }
func fDa(name string, n uint) Feature  { return Feature{name, bit(0xD, 1, EAX, n)} }
func fx1c(name string, n uint) Feature { return Feature{name, bit(0x80000001, 0, ECX, n)} }
func fx1d(name string, n uint) Feature { return Feature{name, bit(0x80000001, 0, EDX, n)} }
func fx8b(name string, n uint) Feature { return Feature{name, bit(0x80000008, 0, EBX, n)} }

// Features are the CPUID bits a CPU baseline can take away, named as
// Linux's /proc/cpuinfo names them. What the guest needs whatever the host
// (fpu, tsc, apic, the hypervisor bit) or what the VMM controls itself
// (vmx, svm, the topology: leaves 0xB and 0x1F, HTT) is not listed, nor what KVM emulates on
// every host whatever its CPU (x2apic, the TSC-deadline timer: an AMD host
// does not list them, yet its guests are better off with them), nor the
// flags Linux derives rather than reads from one bit (constant_tsc, ...).
var Features = []Feature{
	f1d("vme", 1), f1d("de", 2), f1d("pse", 3), f1d("msr", 5), f1d("pae", 6),
	f1d("mce", 7), f1d("cx8", 8), f1d("sep", 11), f1d("mtrr", 12),
	f1d("pge", 13), f1d("mca", 14), f1d("cmov", 15), f1d("pat", 16),
	f1d("pse36", 17), f1d("clflush", 19), f1d("mmx", 23), f1d("fxsr", 24),
	f1d("sse", 25), f1d("sse2", 26), f1d("ss", 27),

	f1c("pni", 0), f1c("pclmulqdq", 1), f1c("monitor", 3), f1c("ssse3", 9),
	f1c("fma", 12), f1c("cx16", 13), f1c("pdcm", 15), f1c("pcid", 17),
	f1c("sse4_1", 19), f1c("sse4_2", 20), f1c("movbe", 22),
	f1c("popcnt", 23), f1c("aes", 25),
	f1c("xsave", 26), f1c("avx", 28), f1c("f16c", 29), f1c("rdrand", 30),

	f7b("fsgsbase", 0), f7b("tsc_adjust", 1), f7b("bmi1", 3), f7b("hle", 4),
	f7b("avx2", 5), f7b("smep", 7), f7b("bmi2", 8), f7b("erms", 9),
	f7b("invpcid", 10), f7b("rtm", 11), f7b("mpx", 14), f7b("avx512f", 16),
	f7b("avx512dq", 17), f7b("rdseed", 18), f7b("adx", 19), f7b("smap", 20),
	f7b("avx512ifma", 21), f7b("clflushopt", 23), f7b("clwb", 24),
	f7b("avx512pf", 26), f7b("avx512er", 27), f7b("avx512cd", 28),
	f7b("sha_ni", 29), f7b("avx512bw", 30), f7b("avx512vl", 31),

	f7c("avx512vbmi", 1), f7c("umip", 2), f7c("pku", 3), f7c("ospke", 4),
	f7c("waitpkg", 5), f7c("avx512_vbmi2", 6), f7c("gfni", 8), f7c("vaes", 9),
	f7c("vpclmulqdq", 10), f7c("avx512_vnni", 11), f7c("avx512_bitalg", 12),
	f7c("avx512_vpopcntdq", 14), f7c("la57", 16), f7c("rdpid", 22),
	f7c("cldemote", 25), f7c("movdiri", 27), f7c("movdir64b", 28),

	f7d("avx512_4vnniw", 2), f7d("avx512_4fmaps", 3), f7d("fsrm", 4),
	f7d("avx512_vp2intersect", 8), f7d("md_clear", 10), f7d("serialize", 14),
	f7d("tsxldtrk", 16), f7d("amx_bf16", 22), f7d("avx512_fp16", 23),
	f7d("amx_tile", 24), f7d("amx_int8", 25), f7d("flush_l1d", 28),
	f7d("arch_capabilities", 29),

	f71a("avx_vnni", 4), f71a("avx512_bf16", 5), f71a("fzrm", 10),
	f71a("fsrs", 11), f71a("fsrc", 12), f71a("amx_fp16", 21), f71a("avx_ifma", 23),

	fDa("xsaveopt", 0), fDa("xsavec", 1), fDa("xgetbv1", 2), fDa("xsaves", 3),

	fx1d("syscall", 11), fx1d("nx", 20), fx1d("mmxext", 22), fx1d("fxsr_opt", 25),
	fx1d("pdpe1gb", 26), fx1d("rdtscp", 27), fx1d("lm", 29),

	fx1c("lahf_lm", 0), fx1c("cmp_legacy", 1), fx1c("extapic", 3),
	fx1c("cr8_legacy", 4), fx1c("abm", 5), fx1c("sse4a", 6),
	fx1c("misalignsse", 7), fx1c("3dnowprefetch", 8), fx1c("osvw", 9),
	fx1c("xop", 11), fx1c("fma4", 16), fx1c("tbm", 21), fx1c("topoext", 22),
	fx1c("perfctr_core", 23), fx1c("mwaitx", 29),

	fx8b("clzero", 0), fx8b("irperf", 1), fx8b("xsaveerptr", 2),
	fx8b("rdpru", 4), fx8b("wbnoinvd", 9),
}

// xsaveComponents ties the XSAVE state components a guest may enable in
// XCR0 (CPUID.0DH.0:EAX, Intel SDM vol. 1 section 13.2) to the feature
// that uses them: a guest that enabled AVX-512 state on one host could not
// be restored on a host without it (KVM_SET_XCRS refuses the value).
var xsaveComponents = []struct {
	feature string
	mask    uint32
}{
	{"avx", 1 << 2},                 // YMM upper halves
	{"mpx", 1<<3 | 1<<4},            // BNDREGS, BNDCSR
	{"avx512f", 1<<5 | 1<<6 | 1<<7}, // opmask, ZMM_Hi256, Hi16_ZMM
	{"pku", 1 << 9},                 // PKRU
	{"amx_tile", 1<<17 | 1<<18},     // XTILECFG, XTILEDATA
}

// Restrict returns the bits to clear so that a guest sees no feature of
// the table that allowed (names as /proc/cpuinfo flags) lacks, and cannot
// enable their XSAVE state. Names the table does not know are ignored.
func Restrict(allowed []string) []Bits {
	var out []Bits
	for _, f := range Features {
		if !slices.Contains(allowed, f.Name) {
			out = append(out, f.Bits)
		}
	}
	var xcr0 uint32
	for _, c := range xsaveComponents {
		if !slices.Contains(allowed, c.feature) {
			xcr0 |= c.mask
		}
	}
	if !slices.Contains(allowed, "xsave") {
		xcr0 = ^uint32(0) &^ 3 // x87 and SSE state stay: FXSAVE covers them
	}
	if xcr0 != 0 {
		out = append(out, Bits{Function: 0xD, Index: 0, Reg: EAX, Mask: xcr0})
	}
	return out
}

// Restricted returns t with Restrict(allowed) added to what it clears.
func Restricted(t Template, allowed []string) Template {
	t.Clear = slices.Concat(t.Clear, Restrict(allowed))
	return t
}

// has reports whether entries set every bit of b.
func has(entries []Entry, b Bits) bool {
	for i := range entries {
		if b.matches(&entries[i]) {
			return *entries[i].reg(b.Reg)&b.Mask == b.Mask
		}
	}
	return false
}

// Present returns the names of the table's features that entries offer,
// sorted: what a guest given entries may use, and so what any host it
// moves to must offer.
func Present(entries []Entry) []string {
	var out []string
	for _, f := range Features {
		if has(entries, f.Bits) {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Missing returns the features of want (names as /proc/cpuinfo flags) the
// table knows and entries lack, sorted.
func Missing(entries []Entry, want []string) []string {
	var out []string
	for _, f := range Features {
		if slices.Contains(want, f.Name) && !has(entries, f.Bits) {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}
