package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Wildcard in a group's list admits every name with a valid certificate.
const Wildcard = "*"

// DefaultMaxMembers bounds a group whose list is the wildcard when the
// policy file sets no max_members.
const DefaultMaxMembers = 1000

// Policy says which names may be in which group. It is read from JSON:
//
//	{"groups": {"room": ["alice", "bob"], "lobby": ["*"]}, "max_members": 200}
//
// A group not listed admits nobody. A group's size is bounded by the
// length of its list, or for a wildcard list by max_members (default
// DefaultMaxMembers). A Policy is immutable and safe for concurrent use.
type Policy struct {
	groups     map[string][]string
	maxMembers int
}

type policyFile struct {
	Groups     map[string][]string `json:"groups"`
	MaxMembers int                 `json:"max_members,omitempty"`
}

// ParsePolicy reads a policy from its JSON form. Unknown fields, invalid
// names and empty lists are errors, so that a typo does not silently admit
// or exclude someone.
func ParsePolicy(data []byte) (*Policy, error) {
	var f policyFile
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("identity: policy: %w (want {\"groups\": {\"room\": [\"alice\", \"bob\"]}})", err)
	}
	if len(f.Groups) == 0 {
		return nil, errors.New("identity: policy: no groups; add {\"groups\": {\"NAME\": [\"IDENTITY\", ...]}}")
	}
	if f.MaxMembers < 0 {
		return nil, errors.New("identity: policy: max_members must be positive")
	}
	p := &Policy{groups: make(map[string][]string, len(f.Groups)), maxMembers: f.MaxMembers}
	if p.maxMembers == 0 {
		p.maxMembers = DefaultMaxMembers
	}
	for g, names := range f.Groups {
		if len(names) == 0 {
			return nil, fmt.Errorf("identity: policy: group %q lists nobody", g)
		}
		for _, n := range names {
			if n != Wildcard && !ValidName(n) {
				return nil, fmt.Errorf("identity: policy: group %q: invalid name %q", g, n)
			}
		}
		p.groups[g] = slices.Clone(names)
	}
	return p, nil
}

// LoadPolicy reads a policy file.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: policy: %w", err)
	}
	return ParsePolicy(data)
}

// AllowAll is a policy that admits every name to every group, for
// deployments that rely on the trust anchor alone.
func AllowAll() *Policy { return &Policy{maxMembers: DefaultMaxMembers} }

// Admits reports whether name may be a member of group.
func (p *Policy) Admits(group, name string) bool {
	if p.groups == nil {
		return ValidName(name)
	}
	names, ok := p.groups[group]
	if !ok {
		return false
	}
	return slices.Contains(names, Wildcard) || slices.Contains(names, name)
}

// Check is Admits as an error: nil, or ErrNotAdmitted naming both.
func (p *Policy) Check(group, name string) error {
	if p.Admits(group, name) {
		return nil
	}
	return fmt.Errorf("%w: %q in group %q", ErrNotAdmitted, name, group)
}

// MaxMembers is the largest size the policy allows group (0: the group is
// not in the policy).
func (p *Policy) MaxMembers(group string) int {
	if p.groups == nil {
		return p.maxMembers
	}
	names, ok := p.groups[group]
	if !ok {
		return 0
	}
	if slices.Contains(names, Wildcard) {
		return p.maxMembers
	}
	return len(names)
}
