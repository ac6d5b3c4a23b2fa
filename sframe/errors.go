package sframe

import "errors"

// Errors returned by this package. Test for them with errors.Is: returned
// errors may wrap them with detail.
var (
	// ErrMalformedHeader means the SFrame header is truncated or not in its
	// minimal encoding. The ciphertext must be discarded.
	ErrMalformedHeader = errors.New("sframe: malformed header")

	// ErrTruncated means the ciphertext is too short to hold the suite's
	// authentication tag.
	ErrTruncated = errors.New("sframe: ciphertext shorter than the authentication tag")

	// ErrUnknownKID means no key is installed for the header's KID. RFC 9605
	// allows buffering the ciphertext until the key arrives.
	ErrUnknownKID = errors.New("sframe: no key for KID")

	// ErrAuthentication means the tag did not verify: the ciphertext, header
	// or metadata was altered, or the wrong key was used.
	ErrAuthentication = errors.New("sframe: authentication failed")

	// ErrReplay means the counter was already accepted for this KID, or is
	// older than the replay window.
	ErrReplay = errors.New("sframe: replayed or too old counter")

	// ErrCounterExhausted means the sender's counter or the key's usage
	// limit is reached. Install a new key (new KID) to keep sending.
	ErrCounterExhausted = errors.New("sframe: counter or key usage limit reached; switch to a new key")

	// ErrUnsupportedSuite means the cipher suite is not one this package
	// implements.
	ErrUnsupportedSuite = errors.New("sframe: unsupported cipher suite")

	// ErrInvalidKey means a base key is empty or otherwise unusable.
	ErrInvalidKey = errors.New("sframe: invalid base key")

	// ErrDuplicateKID means a key for the KID is already installed. Remove
	// it first: replacing a key in place would reset its replay window.
	ErrDuplicateKID = errors.New("sframe: KID already has a key")

	// ErrTooLarge means the plaintext exceeds what the suite can encrypt
	// in one operation.
	ErrTooLarge = errors.New("sframe: plaintext too large for one SFrame operation")
)
