package jwtrotor

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"
)

// keyPool hands out real key pairs made once per test process, so that a
// test making thousands of keys (the model test) pays for key generation
// once (RSA-2048 takes about 60 ms here). Each source from it hands a key
// out once, so kids stay unique within the storage the source serves;
// different sources hand out the same keys, so two sources must never
// serve one storage.
type keyPool struct {
	mu   sync.Mutex
	keys map[string][]*generatedKey
}

var sharedKeys = &keyPool{keys: map[string][]*generatedKey{}}

// source returns a key source that starts at the front of the pool.
func (p *keyPool) source() keySource {
	var mu sync.Mutex
	used := map[string]int{}
	return func(alg string, bits int) (*generatedKey, error) {
		if !isRSA(alg) {
			bits = 0
		}
		kind := fmt.Sprintf("%s/%d", alg, bits)
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
		g, err := generateKey(alg, bits)
		if err != nil {
			return nil, err
		}
		p.keys[kind] = append(p.keys[kind], g)
	}
	return p.keys[kind][i], nil
}

// testWrappingKeys are RSA-4096 import wrapping keys made once per test
// process (a second or more each): every test backend's mount uses the
// first; the second stands for another mount's.
var testWrappingKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for range 2 {
		k, err := rsa.GenerateKey(rand.Reader, wrappingBits)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
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
