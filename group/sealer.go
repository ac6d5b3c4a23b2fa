package group

import "github.com/moqsframe/moqsframe/keyschedule"

// Sealer is an outbound SFrame stream that refuses to seal once the member
// was removed (it has no keys for the group's new epochs, and must stop
// sending on the old ones), or once it refused a commit that brought a
// credential it does not accept (ErrRefused: the others have moved to an
// epoch it will not use, with someone it does not trust).
type Sealer struct {
	m  *Member
	st *keyschedule.Stream
}

// Seal encrypts with the newest epoch (keyschedule.Stream.Seal).
func (s *Sealer) Seal(dst, metadata, plaintext []byte) ([]byte, error) {
	if s.m.isRemoved.Load() {
		return nil, ErrRemoved
	}
	if s.m.isRefused.Load() {
		return nil, ErrRefused
	}
	return s.st.Seal(dst, metadata, plaintext)
}

// Stream returns an outbound stream with the given KID context value (use a
// distinct value per published track).
func (m *Member) Stream(context uint64) (*Sealer, error) {
	st, err := m.sched.Stream(context)
	if err != nil {
		return nil, err
	}
	return &Sealer{m: m, st: st}, nil
}
