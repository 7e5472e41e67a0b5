package jwtrotor

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// keyPool hands out real key pairs made once per test process, so that a
// test making thousands of keys (the model test) pays for key generation
// once. Each source from it hands a key out once, so kids stay unique within
// the storage the source serves; different sources hand out the same keys,
// so two sources must never serve one storage.
//
// Elliptic-curve and Ed25519 keys are derived from their kind and index, so
// key i of a kind is the same key pair in every process: a sequence the
// model test kept replays with the kids it failed with (some rules break
// ties by kid). RSA keys come from testdata/keypool.txt while it lasts: generating one
// costs 60 ms to seconds (RSA-4096), which made key generation two thirds
// of the unit suite's time. Each fixture key goes to one kind only, so two
// kinds (RS256 and PS256, or a ring's keys and the keys a test imports)
// never share a key pair, as freshly generated keys would not.
type keyPool struct {
	mu   sync.Mutex
	keys map[string][]*generatedKey
	rsa  map[int]int // fixture keys of each size already handed to a kind
}

var sharedKeys = &keyPool{keys: map[string][]*generatedKey{}, rsa: map[int]int{}}

// source returns a key source that starts at the front of the pool.
func (p *keyPool) source() keySource { return p.sourceIn("") }

// sourceIn returns a key source over the pool's keys of namespace ns: the
// keys of one namespace are never those of another.
func (p *keyPool) sourceIn(ns string) keySource {
	var mu sync.Mutex
	used := map[string]int{}
	return func(alg string, bits int) (*generatedKey, error) {
		if !isRSA(alg) {
			bits = 0
		}
		kind := fmt.Sprintf("%s%s/%d", ns, alg, bits)
		mu.Lock()
		i := used[kind]
		used[kind]++
		mu.Unlock()
		return p.get(kind, alg, bits, i)
	}
}

func (p *keyPool) get(kind, alg string, bits, i int) (*generatedKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.keys[kind]) <= i {
		var g *generatedKey
		var err error
		if fixed := fixtureRSA(); isRSA(alg) && p.rsa[bits] < len(fixed[bits]) {
			var k *rsa.PrivateKey
			k, err = fixed[bits][p.rsa[bits]].key(bits, p.rsa[bits])
			if err == nil {
				g, err = newGeneratedKey(k, alg)
			}
			p.rsa[bits]++
		} else if isRSA(alg) {
			g, err = generateKey(alg, bits)
		} else {
			g, err = derivedKey(kind, alg, len(p.keys[kind]))
		}
		if err != nil {
			return nil, err
		}
		p.keys[kind] = append(p.keys[kind], g)
	}
	return p.keys[kind][i], nil
}

// testSources are the key sources of running tests' backends: one for each
// test and subtest, and the one that serves each storage.
var testSources = struct {
	sync.Mutex
	byTest    map[testing.TB]keySource
	byStorage map[logical.Storage]testing.TB
	named     map[string]keySource
}{byTest: map[testing.TB]keySource{}, byStorage: map[logical.Storage]testing.TB{}, named: map[string]keySource{}}

// storageKeySource returns the key source of a test backend of t over s:
// the one already serving s (a restart, another node), or else t's own.
// Every backend of one test draws from one source, so no two keys a test
// makes are one key pair, while tests reuse the same pre-made keys.
func storageKeySource(t testing.TB, s logical.Storage) keySource {
	testSources.Lock()
	defer testSources.Unlock()
	keyable := reflect.TypeOf(s).Comparable()
	if keyable {
		if owner, ok := testSources.byStorage[s]; ok {
			return testSources.byTest[owner]
		}
	}
	src, ok := testSources.byTest[t]
	if !ok {
		src = sharedKeys.source()
		testSources.byTest[t] = src
		t.Cleanup(func() {
			testSources.Lock()
			defer testSources.Unlock()
			delete(testSources.byTest, t)
			for st, owner := range testSources.byStorage {
				if owner == t {
					delete(testSources.byStorage, st)
				}
			}
		})
	}
	if keyable {
		testSources.byStorage[s] = t
	}
	return src
}

// testKeySource returns the key source in namespace ns of t's top-level
// test, for keys a test makes itself (to import or trust).
func testKeySource(t testing.TB, ns string) keySource {
	testSources.Lock()
	defer testSources.Unlock()
	top, _, _ := strings.Cut(t.Name(), "/")
	name := ns + " " + top
	src, ok := testSources.named[name]
	if !ok {
		src = sharedKeys.sourceIn(ns)
		testSources.named[name] = src
		if top == t.Name() {
			// A run with -count=n starts the test over at the pool's front.
			t.Cleanup(func() {
				testSources.Lock()
				defer testSources.Unlock()
				delete(testSources.named, name)
			})
		}
	}
	return src
}

// testWrappingKeys are the RSA-4096 import wrapping keys of the test
// process: every test backend's mount uses the first; the second stands for
// another mount's.
var testWrappingKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for i := range 2 {
		g, err := sharedKeys.get("wrap/RSA-4096", "RS256", wrappingBits, i)
		if err != nil {
			return nil, err
		}
		out = append(out, g.Private.(*rsa.PrivateKey))
	}
	return out, nil
})

// testWrappingKey returns the i-th test wrapping key.
func testWrappingKey(i int) *rsa.PrivateKey {
	keys, err := testWrappingKeys()
	if err != nil {
		panic(err)
	}
	return keys[i]
}

// testWrapKeys is the wrapping key source of test backends.
func testWrapKeys() (*rsa.PrivateKey, error) { return testWrappingKey(0), nil }

// The fixture's RSA keys are not stored: each prime is derived from a
// public seed (SHA-256 of the key's size, index and prime), plus twice an
// offset the fixture records: the distance to the first prime from there.
// Finding the offsets is the expensive part of key generation, done once by
// JWTROTOR_WRITE_KEYPOOL=1 go test -run '^TestKeyPoolFixture$' .
// These keys are public knowledge and must never sign anything outside tests.
const keyPoolFile = "testdata/keypool.txt"

// keyPoolSizes is how many fixture keys of each size the file holds: enough
// for one run of the unit suite with room to spare (the model test draws
// more, and generates them past the fixture's end).
var keyPoolSizes = map[int]int{2048: 256, 3072: 12, 4096: 24}

type fixtureKey struct{ dp, dq uint32 }

const rsaE = 65537

// fixtureBase is the derived start of prime which (p or q) of key index of
// size bits: top two bits set, so that the product has all its bits, and odd.
func fixtureBase(bits, index int, which byte) *big.Int {
	n := bits / 16
	var buf []byte
	for c := 0; len(buf) < n; c++ {
		h := sha256.Sum256(fmt.Appendf(nil, "jwt-rotor test key %d/%d/%c/%d", bits, index, which, c))
		buf = append(buf, h[:]...)
	}
	buf = buf[:n]
	buf[0] |= 0xC0
	buf[n-1] |= 1
	return new(big.Int).SetBytes(buf)
}

func fixturePrime(bits, index int, which byte, offset uint32) *big.Int {
	p := fixtureBase(bits, index, which)
	return p.Add(p, new(big.Int).SetUint64(2*uint64(offset)))
}

// key rebuilds the fixture key and checks it: a millisecond, against 60 ms
// to seconds to generate one.
func (f fixtureKey) key(bits, index int) (*rsa.PrivateKey, error) {
	p := fixturePrime(bits, index, 'p', f.dp)
	q := fixturePrime(bits, index, 'q', f.dq)
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: rsaE},
		D:         new(big.Int).ModInverse(big.NewInt(rsaE), phi),
		Primes:    []*big.Int{p, q},
	}
	k.Precompute()
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%s: RSA-%d key %d: %w", keyPoolFile, bits, index, err)
	}
	return k, nil
}

// fixtureRSA reads the fixture once; a missing or unreadable file leaves
// every key to be generated.
var fixtureRSA = sync.OnceValue(readKeyPool)

func readKeyPool() map[int][]fixtureKey {
	out := map[int][]fixtureKey{}
	f, err := os.Open(keyPoolFile)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		bits, err1 := strconv.Atoi(fields[0])
		dp, err2 := strconv.ParseUint(fields[1], 10, 32)
		dq, err3 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			return map[int][]fixtureKey{}
		}
		out[bits] = append(out[bits], fixtureKey{uint32(dp), uint32(dq)})
	}
	return out
}

// findOffset is the distance, in steps of two, from the derived start to the
// first prime p with gcd(e, p-1) = 1.
func findOffset(bits, index int, which byte) uint32 {
	e := big.NewInt(rsaE)
	p := fixtureBase(bits, index, which)
	two := big.NewInt(2)
	for off := uint32(0); ; off++ {
		if new(big.Int).Mod(p, e).Int64() != 1 && p.ProbablyPrime(20) {
			return off
		}
		p.Add(p, two)
	}
}

// The fixture holds as many keys of each size as keyPoolSizes says, all
// different and of their size, and they are real RSA keys that sign what
// their public halves verify; JWTROTOR_WRITE_KEYPOOL=1 writes the file anew.
func TestKeyPoolFixture(t *testing.T) {
	fixed := fixtureRSA()
	if os.Getenv("JWTROTOR_WRITE_KEYPOOL") != "" {
		writeKeyPool(t)
		fixed = readKeyPool()
	}
	t.Parallel()
	seen := map[string]bool{}
	for bits, want := range keyPoolSizes {
		if len(fixed[bits]) != want {
			t.Fatalf("%s holds %d RSA-%d keys, want %d", keyPoolFile, len(fixed[bits]), bits, want)
		}
		for i, f := range fixed[bits] {
			p, q := fixturePrime(bits, i, 'p', f.dp), fixturePrime(bits, i, 'q', f.dq)
			n := new(big.Int).Mul(p, q)
			if n.BitLen() != bits || p.Cmp(q) == 0 || seen[n.String()] {
				t.Fatalf("RSA-%d key %d: %d bits, or a repeated prime or key", bits, i, n.BitLen())
			}
			seen[n.String()] = true
			// The first and last keys of each size are rebuilt and sign
			// here; the pool checks every key as it hands it out (key),
			// so a wrong offset fails the test that draws its key.
			if i == 0 || i == len(fixed[bits])-1 {
				k, err := f.key(bits, i)
				if err != nil {
					t.Fatal(err)
				}
				digest := sha256.Sum256([]byte("pool"))
				sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
				if err != nil {
					t.Fatal(err)
				}
				if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
					t.Fatalf("RSA-%d key %d does not verify its own signature: %v", bits, i, err)
				}
			}
		}
	}
}

// writeKeyPool finds the offsets of keyPoolSizes keys, on every core, and
// writes the fixture; the offsets already in it are kept.
func writeKeyPool(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Offsets of the test RSA keys' primes from their derived starts\n")
	b.WriteString("# (keypool_test.go): size, p offset, q offset. Test keys only.\n")
	for _, bits := range []int{2048, 3072, 4096} {
		n := keyPoolSizes[bits]
		keys := make([]fixtureKey, n)
		var wg sync.WaitGroup
		work := make(chan int)
		for range runtime.NumCPU() {
			wg.Go(func() {
				for i := range work {
					keys[i] = fixtureKey{findOffset(bits, i, 'p'), findOffset(bits, i, 'q')}
				}
			})
		}
		for i := range n {
			if old := fixtureRSA()[bits]; i < len(old) {
				keys[i] = old[i] // derived from the same seed: the same offsets
				continue
			}
			work <- i
		}
		close(work)
		wg.Wait()
		for _, k := range keys {
			fmt.Fprintf(&b, "%d %d %d\n", bits, k.dp, k.dq)
		}
	}
	if err := os.WriteFile(keyPoolFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// derivedKey is key index of kind for a non-RSA alg, derived from SHA-256
// of the kind and index: the same in every process.
func derivedKey(kind, alg string, index int) (*generatedKey, error) {
	seed := func(n, try int) []byte {
		var out []byte
		for c := 0; len(out) < n; c++ {
			h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%d/%d", kind, index, try, c)))
			out = append(out, h[:]...)
		}
		return out[:n]
	}
	var curve elliptic.Curve
	switch alg {
	case "EdDSA":
		return newGeneratedKey(ed25519.NewKeyFromSeed(seed(ed25519.SeedSize, 0)), alg)
	case "ES256":
		curve = elliptic.P256()
	case "ES384":
		curve = elliptic.P384()
	case "ES512":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("no derived %s keys", alg)
	}
	size := (curve.Params().BitSize + 7) / 8
	for try := 0; ; try++ {
		d := seed(size, try)
		if curve == elliptic.P521() {
			d[0] &= 1 // 521 bits
		}
		// A scalar not below the curve's order is refused; the next try
		// draws another (for P-256 about once in four billion).
		if k, err := ecdsa.ParseRawPrivateKey(curve, d); err == nil {
			return newGeneratedKey(k, alg)
		}
	}
}

// A derived key is the same key pair in every pool and process (kept model
// sequences replay with the kids they failed with), differs between kinds
// and indices, and signs what its public half verifies.
func TestKeyPoolDerivedKeysAreStable(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, kind := range []string{"EdDSA/0", "ES256/0", "ES384/0", "ES512/0", "import/ES256"} {
		alg, _, _ := strings.Cut(strings.TrimPrefix(kind, "import/"), "/")
		for i := 0; i < 3; i++ {
			p1 := &keyPool{keys: map[string][]*generatedKey{}, rsa: map[int]int{}}
			p2 := &keyPool{keys: map[string][]*generatedKey{}, rsa: map[int]int{}}
			a, err := p1.get(kind, alg, 0, i)
			if err != nil {
				t.Fatal(err)
			}
			// The second pool hands its keys out in another order.
			b, err := p2.get(kind, alg, 0, i+1)
			if err == nil {
				b, err = p2.get(kind, alg, 0, i)
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.KID != b.KID {
				t.Fatalf("%s key %d: kid %s in one pool, %s in another", kind, i, a.KID, b.KID)
			}
			if other, dup := seen[a.KID]; dup {
				t.Fatalf("%s key %d is also %s", kind, i, other)
			}
			seen[a.KID] = fmt.Sprintf("%s key %d", kind, i)
			digest := sha256.Sum256([]byte("pool"))
			sig, err := a.Private.Sign(nil, digest[:], crypto.SHA256)
			if alg == "EdDSA" {
				sig, err = a.Private.Sign(nil, []byte("pool"), crypto.Hash(0))
			}
			if err != nil {
				t.Fatal(err)
			}
			switch pub := a.Private.Public().(type) {
			case ed25519.PublicKey:
				if !ed25519.Verify(pub, []byte("pool"), sig) {
					t.Fatalf("%s key %d does not verify its own signature", kind, i)
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, digest[:], sig) || pub.Curve.Params().Name != map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg] {
					t.Fatalf("%s key %d does not verify its own signature on its curve", kind, i)
				}
			}
		}
	}
}
