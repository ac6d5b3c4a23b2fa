// Package impl is a registry of alternative implementations of a primitive
// (e.g. the AES-GCM assembly paths), so that tests and benchmarks can force
// each one in turn. It follows crypto/internal/impl in the standard library:
// selection is a test hook, not an API, which is why it lives in an internal
// package rather than as an exported setter on the primitive's package.
//
// Each package registers its alternatives at init, fastest first, each with
// an atomic.Bool that starts as "the CPU supports it" and that the package
// reads on every call; it uses the first enabled alternative, and its base
// implementation (always available) when none is enabled. Because the
// switches are atomics, flipping them while other goroutines seal or open is
// not a data race: an operation in flight simply finishes on the path it
// loaded, and every path computes the same result.
package impl

import (
	"strings"
	"sync"
	"sync/atomic"
)

type implementation struct {
	pkg, name string
	available bool         // supported by this CPU (fixed at Register)
	enabled   *atomic.Bool // the switch the package reads
}

var (
	// mu serialises Select and Reset so that two tests that select
	// concurrently cannot leave two alternatives enabled. Register only
	// runs during package initialisation.
	mu    sync.Mutex
	impls []implementation
	bases = map[string]string{}
)

// Register records an alternative implementation of pkg. enabled must hold
// whether the implementation is available on this CPU; it is then the
// switch that Select flips. Call it from package initialisation, fastest
// alternative first. pkg is a package name, not a path ("aesgcm").
func Register(pkg, name string, enabled *atomic.Bool) {
	if strings.Contains(pkg, "/") {
		panic("impl: package name must not contain slashes")
	}
	impls = append(impls, implementation{pkg: pkg, name: name, available: enabled.Load(), enabled: enabled})
}

// RegisterBase names pkg's base implementation, the one used when every
// alternative is disabled, so that listings and benchmark tables can name it.
func RegisterBase(pkg, name string) {
	bases[pkg] = name
}

// Packages returns the packages that registered implementations.
func Packages() []string {
	var pkgs []string
	seen := map[string]bool{}
	for _, i := range impls {
		if !seen[i.pkg] {
			seen[i.pkg] = true
			pkgs = append(pkgs, i.pkg)
		}
	}
	for p := range bases {
		if !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// List returns every alternative registered for pkg, available or not,
// fastest first. The base implementation is not included.
func List(pkg string) []string {
	var names []string
	for _, i := range impls {
		if i.pkg == pkg {
			names = append(names, i.name)
		}
	}
	return names
}

// Available returns the implementations of pkg that this CPU can run:
// the available alternatives, fastest first, then the base. It is what
// tests and benchmarks iterate over.
func Available(pkg string) []string {
	var names []string
	for _, i := range impls {
		if i.pkg == pkg && i.available {
			names = append(names, i.name)
		}
	}
	return append(names, bases[pkg])
}

// Selected returns the name of the implementation pkg uses now: the first
// enabled alternative, or the base.
func Selected(pkg string) string {
	for _, i := range impls {
		if i.pkg == pkg && i.enabled.Load() {
			return i.name
		}
	}
	return bases[pkg]
}

// Select makes pkg use only the named implementation (the base if name is
// "" or the base's name) and reports whether it is available; if not,
// nothing changes. Tests should undo it with Reset (t.Cleanup).
func Select(pkg, name string) bool {
	mu.Lock()
	defer mu.Unlock()
	base := name == "" || name == bases[pkg]
	found := base
	for _, i := range impls {
		if i.pkg == pkg && i.name == name && i.available {
			found = true
		}
	}
	if !found {
		return false
	}
	for _, i := range impls {
		if i.pkg == pkg {
			i.enabled.Store(!base && i.name == name)
		}
	}
	return true
}

// Reset re-enables every available implementation of pkg, so that it again
// uses the fastest one.
func Reset(pkg string) {
	mu.Lock()
	defer mu.Unlock()
	for _, i := range impls {
		if i.pkg == pkg {
			i.enabled.Store(i.available)
		}
	}
}
