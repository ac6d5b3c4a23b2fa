package keyschedule

import (
	"errors"
	"fmt"

	"github.com/moqsframe/moqsframe/sframe"
)

// Errors returned by this package. Test for them with errors.Is: returned
// errors may wrap them with detail (epoch numbers, KIDs, sizes; never key
// material). Open and Seal may also return the sframe package's errors.
var (
	// ErrNoEpoch means no epoch is installed yet, so there is nothing to
	// encrypt with.
	ErrNoEpoch = errors.New("keyschedule: no epoch installed")

	// ErrStaleEpoch means Install was given an epoch number not greater
	// than the newest installed one. Epochs must be installed in order.
	ErrStaleEpoch = errors.New("keyschedule: epoch not newer than the installed one")

	// ErrInvalidEpoch means an Epoch's fields are unusable: a base key of
	// the wrong length, a group size below 1, an index outside the group,
	// or a group too large for the KID layout.
	ErrInvalidEpoch = errors.New("keyschedule: invalid epoch")

	// ErrContextRange means a context value does not fit in the KID (64-S-E
	// bits) or exceeds the configured maximum (WithMaxContext).
	ErrContextRange = errors.New("keyschedule: context value out of range")

	// ErrContextExhausted means every context value of the current epoch
	// has reached its usage limit. A new epoch is needed to keep sending;
	// the rekey handler, if any, has been told.
	ErrContextExhausted = errors.New("keyschedule: all context values of the epoch are used up; a new epoch is needed")

	// ErrObjectTooLarge means one plaintext alone exceeds the per-key block
	// budget (WithRotateAfterBlocks).
	ErrObjectTooLarge = errors.New("keyschedule: plaintext exceeds the per-key usage budget")

	// ErrUnknownEpoch means a ciphertext's KID names an epoch slot that has
	// never held an epoch. It also matches sframe.ErrUnknownKID.
	ErrUnknownEpoch = errors.New("keyschedule: no epoch for the KID")

	// ErrEpochRetired means a ciphertext's KID names an epoch slot whose
	// epoch was retired (grace period over, or replaced by a newer epoch
	// with the same low E bits). It also matches sframe.ErrUnknownKID.
	ErrEpochRetired = errors.New("keyschedule: the KID's epoch is retired")

	// ErrInvalidMember means Acknowledge named a member index outside the
	// epoch's group.
	ErrInvalidMember = errors.New("keyschedule: member index outside the group")

	// ErrAckOverflow means too many acknowledgements for epochs not yet
	// installed are buffered; this one was dropped.
	ErrAckOverflow = errors.New("keyschedule: too many acknowledgements for future epochs")

	// ErrInvalidConfig means an Option has an unusable value.
	ErrInvalidConfig = errors.New("keyschedule: invalid configuration")
)

// Preformatted errors for the decrypt path, so a refusal allocates nothing.
// Both also match sframe.ErrUnknownKID, which is what a pipeline written
// against a plain sframe.Receiver checks for.
var (
	errOpenUnknownEpoch = fmt.Errorf("%w (%w)", ErrUnknownEpoch, sframe.ErrUnknownKID)
	errOpenRetired      = fmt.Errorf("%w (%w)", ErrEpochRetired, sframe.ErrUnknownKID)
)
