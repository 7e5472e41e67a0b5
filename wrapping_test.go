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
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// kwpWrapForTest is AES key wrap with padding (RFC 5649), written from the
// RFC apart from the library the plugin unwraps with, to make import
// ciphertexts in tests; the RFC's own vectors pin it. Unlike the library it
// wraps any length and any kek size, so tests can make what the library
// refuses. The acceptance tests use Vault's own CLI instead.
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
	return importCiphertext(pub, aesKey, kwpWrapForTest(aesKey, der))
}

// importCiphertext is the transit format around any ephemeral key and any
// KWP part, to make what a careless or hostile sender would.
func importCiphertext(pub *rsa.PublicKey, aesKey, kwpPart []byte) (string, error) {
	enc, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, aesKey, nil)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(append(enc, kwpPart...)), nil
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The unwrap of the import format's inner layer, Tink's KWP under an
// AES-256 kek, gives the known answers of Wycheproof's AES-256 vectors
// (aes_kwp_test.json), refuses its altered ones with the one integrity
// error, and the test's wrap makes the same ciphertexts. RFC 5649's own
// vectors (section 6) use a 192-bit kek, which Tink does not take (the
// import format never uses one): they pin the test's wrap, and through
// the library they are the integrity error, not a plaintext.
func TestKWPVectors(t *testing.T) {
	t.Parallel()
	rfcKEK := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		if w := kwpWrapForTest(rfcKEK, unhex(t, v.key)); hex.EncodeToString(w) != v.wrapped {
			t.Fatalf("the test's wrap of %s gives %x, want RFC 5649's %s", v.key, w, v.wrapped)
		}
		if got, err := unwrapKWP(rfcKEK, unhex(t, v.wrapped)); err != errKWPIntegrity {
			t.Fatalf("unwrap under a 192-bit kek gave %x, %v; want the integrity error", got, err)
		}
	}
	for _, v := range []struct {
		tc                 int
		kek, key, wrapped  string
		valid, libraryTake bool
	}{
		{161, "fce0429c610658ef8e7cfb0154c51de2239a8a317f5af5b6714f985fb5c4d75c", "287326b5ed0078e7ca0164d748f667e7", "e3eab96d9a2fda12f9e252053aff15e753e5ea6f5172c92b", true, true},
		{166, "fdcfa902c6f222f527af84da533b14b52e2615da3a89d1d35708b0cd49f60d87", "966b07047354966a703e79607b556032f4f596b7f9206f05", "cfdbbd95f187508a488fe017c5e5d5a5975b68441d520e0e931922388e28784c", true, true},
		{167, "38e1b1d075d9d852b9a6c01c8ff6965af01bac457a4e339ae3e1d7b2ffacc0cd", "80ad6820f1c90981e2ca42b817a345c1179d0a11d8e23a8adc0505e13d87295a", "b63b7e0fec7e315816233db6758fd3e744b9f6a40862bdf866487e53bcb950d8b2649269e51b4475", true, true},
		// A 9-byte key, the shortest the library unwraps.
		{179, "1abf4b7fa2bb62a78f09ddab04625dcacdd9e551d1a69b6b162baa53d2700093", "1723eb9d000916996a", "db7e73da22219e1baac0f4e955c3db2b900b5d3078f94b59", true, true},
		// An 8-byte key, one AES block wrapped: valid KWP, below the
		// library's bound, so the integrity error.
		{178, "1abf4b7fa2bb62a78f09ddab04625dcacdd9e551d1a69b6b162baa53d2700093", "e43f5e4e123a03c4", "3a6746052a1744cfe7e2f36dafc4042d", true, false},
		// Wrapped with a modified initial value.
		{186, "4f710eb6b5e28703becfc3dc52fa8bc1dd44a4a6d38a84b4f94e89ac32d987e7", "a828cbda9b5ff0ae37", "98428fb83dc207033c1585e0242e699be98e0001f1ee15ba", false, false},
		{194, "4f710eb6b5e28703becfc3dc52fa8bc1dd44a4a6d38a84b4f94e89ac32d987e7", "a828cbda9b5ff0ae374f84fa01d070", "f795cf444efd94bd6a561d8cb0703ee0e979c073aa66fdaa", false, false},
	} {
		kek, key, wrapped := unhex(t, v.kek), unhex(t, v.key), unhex(t, v.wrapped)
		got, err := unwrapKWP(kek, wrapped)
		switch {
		case v.libraryTake && (err != nil || !bytes.Equal(got, key)):
			t.Fatalf("tcId %d: unwrap gave %x, %v; want %x", v.tc, got, err, key)
		case !v.libraryTake && err != errKWPIntegrity:
			t.Fatalf("tcId %d: unwrap gave %x, %v; want the integrity error", v.tc, got, err)
		}
		if w := kwpWrapForTest(kek, key); bytes.Equal(w, wrapped) != v.valid {
			t.Fatalf("tcId %d: the test's wrap of %x gives %x, vector %x (valid=%v)", v.tc, key, w, wrapped, v.valid)
		}
	}
}

// Every length the import can carry round-trips under an AES-256 key (the
// import format's), the library's own wrap and the test's agree byte for
// byte, and any change to a wrapped key, a wrong key, a malformed length or
// a length outside the library's bounds is the one integrity error, never a
// wrong plaintext.
func TestKWPRoundTripAndTamper(t *testing.T) {
	t.Parallel()
	kek := make([]byte, 32)
	other := make([]byte, 32)
	rand.Read(kek)
	rand.Read(other)
	lib, err := subtle.NewKWP(kek)
	if err != nil {
		t.Fatal(err)
	}
	lengths := []int{}
	for n := 1; n <= 70; n++ {
		lengths = append(lengths, n)
	}
	// Ed25519, P-256, RSA-2048 and RSA-4096 PKCS#8 keys are about 48,
	// 138, 1218 and 2374 bytes; the ciphertext field (4096 characters)
	// carries at most 2560 bytes of KWP; the library's bound is 8192.
	lengths = append(lengths, 138, 1218, 2374, 2552, 8192)
	for _, n := range lengths {
		plain := make([]byte, n)
		rand.Read(plain)
		w := kwpWrapForTest(kek, plain)
		got, err := unwrapKWP(kek, w)
		if n <= 8 {
			// One AES block: RFC 5649 encrypts it directly, the library
			// refuses it (vault transit import never makes one).
			if err != errKWPIntegrity {
				t.Fatalf("%d bytes: unwrap gave %x, %v; want the integrity error", n, got, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: round trip gave %x, %v", n, got, err)
		}
		if n >= subtle.MinWrapSize {
			if lw, err := lib.Wrap(plain); err != nil || !bytes.Equal(lw, w) {
				t.Fatalf("%d bytes: the library wraps to %x, %v; the test's wrap gives %x", n, lw, err, w)
			}
		}
		if n <= 70 {
			for i := range w {
				bad := append([]byte(nil), w...)
				bad[i] ^= 0x01
				if got, err := unwrapKWP(kek, bad); err != errKWPIntegrity {
					t.Fatalf("%d bytes: flipping byte %d gave %x, %v; want the integrity error", n, i, got, err)
				}
			}
		}
		if _, err := unwrapKWP(other, w); err != errKWPIntegrity {
			t.Fatalf("%d bytes: another key gave %v", n, err)
		}
		for _, cut := range []int{1, 7, 8} {
			if _, err := unwrapKWP(kek, w[:len(w)-cut]); err != errKWPIntegrity {
				t.Fatalf("%d bytes: cutting %d gave %v", n, cut, err)
			}
		}
	}
	// Past the library's bound, and the empty KWP part.
	if _, err := unwrapKWP(kek, kwpWrapForTest(kek, make([]byte, 8193))); err != errKWPIntegrity {
		t.Fatalf("8193 bytes gave %v", err)
	}
	if _, err := unwrapKWP(kek, nil); err != errKWPIntegrity {
		t.Fatalf("an empty KWP part gave %v", err)
	}
	// A wrap whose length field claims more than its blocks hold.
	plain := []byte("0123456789abcdef")
	w := kwpWrapForTest(kek, plain)
	if _, err := unwrapKWP(kek, append(w, w[8:16]...)); err != errKWPIntegrity {
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
		{"a length past 2^31", 1<<31 + 17, zeroTail},
	} {
		if got, err := unwrapKWP(kek, kwpWrapRaw(kek, c.mli, c.blocks)); err != errKWPIntegrity {
			t.Fatalf("%s: unwrap gave %x, %v; want the integrity error", c.name, got, err)
		}
	}
	// The honest form of the last ones unwraps.
	if got, err := unwrapKWP(kek, kwpWrapRaw(kek, 17, zeroTail)); err != nil || !bytes.Equal(got, zeroTail[:17]) {
		t.Fatalf("a 17-byte message: %x, %v", got, err)
	}
	// The kek sizes: AES-128 and AES-256 unwrap; AES-192 and anything else
	// is the integrity error (the import path refuses any ephemeral key but
	// AES-256 before it unwraps).
	for _, size := range []int{0, 15, 16, 24, 31, 32, 33, 64} {
		k := make([]byte, size)
		rand.Read(k)
		var w []byte
		if size == 16 || size == 24 || size == 32 {
			w = kwpWrapForTest(k, plain)
		} else {
			w = kwpWrapForTest(kek, plain)
		}
		got, err := unwrapKWP(k, w)
		if ok := size == 16 || size == 32; ok != (err == nil) || (!ok && err != errKWPIntegrity) || (ok && !bytes.Equal(got, plain)) {
			t.Fatalf("a %d-byte kek: unwrap gave %x, %v", size, got, err)
		}
	}
}

// With no wrapping key yet, nothing can have been wrapped for the mount;
// the first read makes one key pair, stored seal-wrapped, and every later
// read (also after a restart) gives the same key.
func TestWrappingKeyMadeOnceAndSealWrapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	made := 0
	e.b.wrapKeys = func() (*rsa.PrivateKey, error) { made++; return testWrappingKey(0), nil }
	resp, err := e.write("keys/n/import", map[string]any{"ciphertext": wrapForImport(t, &testWrappingKey(0).PublicKey, mustPKCS8(t, newTestKey(t, "P-256"))), "algorithm": "ES256"})
	expect400(t, resp, err, "ciphertext:", "wrapping_key first")
	if made != 0 {
		t.Fatal("an import made the wrapping key")
	}
	first := e.read("wrapping_key").Data["public_key"]
	second := e.read("wrapping_key").Data["public_key"]
	again := e.restart()
	again.b.wrapKeys = func() (*rsa.PrivateKey, error) { made++; return testWrappingKey(1), nil }
	third := again.read("wrapping_key").Data["public_key"]
	if made != 1 || first != second || first != third {
		t.Fatalf("made %d wrapping keys; reads differ: %v", made, first != second || first != third)
	}
	stored := dump(t, e.storage)
	if _, ok := stored[wrappingPath]; !ok {
		t.Fatalf("no entry at %s", wrappingPath)
	}
	declared := e.b.SpecialPaths().SealWrapStorage
	if !slices.Contains(declared, wrappingPrefix) || !slices.Contains(declared, privatePrefix) {
		t.Fatalf("SealWrapStorage = %v lacks %s", declared, wrappingPrefix)
	}
	if strings.Contains(fmt.Sprint(first), "PRIVATE") {
		t.Fatal("the wrapping key read shows a private key")
	}
}
