package jwtrotor

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// kwpWrapForTest is AES key wrap with padding (RFC 5649), written from the
// RFC apart from kwp.go (which only unwraps), to make import ciphertexts in
// tests. The acceptance tests use Vault's own CLI instead.
func kwpWrapForTest(kek, plain []byte) []byte {
	r := append(append([]byte(nil), plain...), make([]byte, (8-len(plain)%8)%8)...)
	return kwpWrapRaw(kek, uint32(len(plain)), r)
}

// kwpWrapRaw wraps the 64-bit blocks r under an initial value that claims
// mli bytes of message, whatever r holds: the wrap of a lying sender.
func kwpWrapRaw(kek []byte, mli uint32, r []byte) []byte {
	block, err := aes.NewCipher(kek)
	if err != nil {
		panic(err)
	}
	var a [8]byte
	copy(a[:], []byte{0xA6, 0x59, 0x59, 0xA6})
	binary.BigEndian.PutUint32(a[4:], mli)
	r = append([]byte(nil), r...)
	n := len(r) / 8
	if n == 1 {
		out := make([]byte, 16)
		block.Encrypt(out, append(a[:], r...))
		return out
	}
	b := make([]byte, 16)
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(b, a[:])
			copy(b[8:], r[8*(i-1):8*i])
			block.Encrypt(b, b)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^uint64(n*j+i))
			copy(r[8*(i-1):8*i], b[8:])
		}
	}
	return append(a[:], r...)
}

// wrapForImport makes an import ciphertext in the transit format: RSA-OAEP
// (SHA-256) of a fresh AES-256 key to pub, followed by der wrapped under it.
func wrapForImport(t testing.TB, pub *rsa.PublicKey, der []byte) string {
	t.Helper()
	ct, err := wrapImportCiphertext(pub, der)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func wrapImportCiphertext(pub *rsa.PublicKey, der []byte) (string, error) {
	aesKey := make([]byte, 32)
	if _, err := rand.Read(aesKey); err != nil {
		return "", err
	}
	enc, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, aesKey, nil)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(append(enc, kwpWrapForTest(aesKey, der)...)), nil
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The unwrap of the import format's inner layer matches RFC 5649's own
// test vectors (section 6: a 20-byte and a 7-byte key under a 192-bit KEK),
// and the test's wrap makes the same ciphertexts.
func TestKWPVectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		got, err := kwpUnwrap(kek, unhex(t, v.wrapped))
		if err != nil || !bytes.Equal(got, unhex(t, v.key)) {
			t.Fatalf("unwrap %s: %x, %v; want %s", v.wrapped, got, err, v.key)
		}
		if w := kwpWrapForTest(kek, unhex(t, v.key)); hex.EncodeToString(w) != v.wrapped {
			t.Fatalf("the test's wrap of %s gives %x, want %s", v.key, w, v.wrapped)
		}
	}
}

// Every length round-trips under an AES-256 key (the import format's), and
// any change to a wrapped key, a wrong key or a malformed length is the one
// integrity error, never a wrong plaintext.
func TestKWPRoundTripAndTamper(t *testing.T) {
	kek := make([]byte, 32)
	other := make([]byte, 32)
	rand.Read(kek)
	rand.Read(other)
	for n := 1; n <= 70; n++ {
		plain := make([]byte, n)
		rand.Read(plain)
		w := kwpWrapForTest(kek, plain)
		got, err := kwpUnwrap(kek, w)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: round trip gave %x, %v", n, got, err)
		}
		for i := range w {
			bad := append([]byte(nil), w...)
			bad[i] ^= 0x01
			if _, err := kwpUnwrap(kek, bad); err != errKWPIntegrity {
				t.Fatalf("%d bytes: flipping byte %d gave %v, want the integrity error", n, i, err)
			}
		}
		if _, err := kwpUnwrap(other, w); err != errKWPIntegrity {
			t.Fatalf("%d bytes: another key gave %v", n, err)
		}
		for _, cut := range []int{1, 7, 8} {
			if len(w)-cut >= 0 {
				if _, err := kwpUnwrap(kek, w[:len(w)-cut]); err != errKWPIntegrity {
					t.Fatalf("%d bytes: cutting %d gave %v", n, cut, err)
				}
			}
		}
	}
	// A wrap whose length field claims more than its blocks hold.
	plain := []byte("0123456789abcdef")
	w := kwpWrapForTest(kek, plain)
	if _, err := kwpUnwrap(kek, append(w, w[8:16]...)); err != errKWPIntegrity {
		t.Fatalf("an extra block gave %v", err)
	}
	// Well-wrapped blocks whose initial value lies about the length: more
	// than the blocks, a whole block less (the padding is at most 7
	// bytes), or padding that is not zero. Each is the integrity error.
	blocks := []byte("0123456789abcdef01234567")
	zeroTail := append([]byte("0123456789abcdef0"), make([]byte, 7)...)
	zeroBlock := append([]byte("0123456789abcdef"), make([]byte, 8)...)
	for _, c := range []struct {
		name   string
		mli    uint32
		blocks []byte
	}{
		{"longer than its blocks", 25, blocks},
		{"a block shorter", 16, zeroBlock},
		{"non-zero padding", 21, blocks},
		{"zero length", 0, make([]byte, 16)},
	} {
		if got, err := kwpUnwrap(kek, kwpWrapRaw(kek, c.mli, c.blocks)); err != errKWPIntegrity {
			t.Fatalf("%s: unwrap gave %x, %v; want the integrity error", c.name, got, err)
		}
	}
	// The honest form of the last one unwraps.
	if got, err := kwpUnwrap(kek, kwpWrapRaw(kek, 17, zeroTail)); err != nil || !bytes.Equal(got, zeroTail[:17]) {
		t.Fatalf("a 17-byte message: %x, %v", got, err)
	}
}
