package jwtrotor

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES key wrap with padding (KWP, RFC 5649), the inner layer of the import
// format Vault's transit engine defines and its `vault transit import`
// command writes: the key material is wrapped under an ephemeral AES-256
// key, which is itself encrypted to the mount's wrapping key.

// kwpIV is the first half of RFC 5649's alternative initial value; the
// second half is the length of the plaintext.
var kwpIV = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// errKWPIntegrity is the one error of kwpUnwrap: which check failed says
// nothing about the plaintext, and telling them apart would help no one but
// someone probing the key.
var errKWPIntegrity = errors.New("the wrapped key fails its integrity check")

// kwpUnwrap reverses RFC 5649 key wrap with padding under kek (16, 24 or 32
// bytes). It returns the plaintext, or errKWPIntegrity for a ciphertext that
// is malformed, wrapped under another key, or altered.
func kwpUnwrap(kek, wrapped []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 {
		return nil, errKWPIntegrity
	}
	n := len(wrapped)/8 - 1 // 64-bit blocks of (padded) plaintext
	var a [8]byte
	r := make([]byte, 8*n)
	var b [16]byte
	if n == 1 {
		// A single block is encrypted directly (RFC 5649, 4.2).
		block.Decrypt(b[:], wrapped)
		copy(a[:], b[:8])
		copy(r, b[8:])
	} else {
		// The unwrapping process of RFC 3394, 2.2.2, index form.
		copy(a[:], wrapped[:8])
		copy(r, wrapped[8:])
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				var tb [8]byte
				binary.BigEndian.PutUint64(tb[:], t)
				for k := range a {
					b[k] = a[k] ^ tb[k]
				}
				copy(b[8:], r[8*(i-1):8*i])
				block.Decrypt(b[:], b[:])
				copy(a[:], b[:8])
				copy(r[8*(i-1):8*i], b[8:])
			}
		}
	}
	// The checks of RFC 5649, 3: the constant half of the AIV, a message
	// length that fits the blocks, and zero padding.
	ok := subtle.ConstantTimeCompare(a[:4], kwpIV[:])
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if ok != 1 || mli <= 8*(n-1) || mli > 8*n {
		return nil, errKWPIntegrity
	}
	var pad byte
	for _, c := range r[mli:] {
		pad |= c
	}
	if pad != 0 {
		return nil, errKWPIntegrity
	}
	return r[:mli], nil
}
