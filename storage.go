package jwtrotor

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// Storage layout. Every entry is JSON with a schema version. A ring's index
// entry holds its settings and every key's public half and timestamps, so
// each state change is one Put; private halves live in entries of their own
// (declared seal-wrapped) so no entry approaches the storage size limit.
const (
	configPath    = "config"
	clockPath     = "clock"
	ringPrefix    = "rings/"
	rolePrefix    = "roles/"
	privatePrefix = "private/"
)

// schemaVersion is written into every entry. Readers accept every version up
// to it; a version above it was written by a newer plugin and is refused
// rather than half-understood.
const schemaVersion = 1

type configEntry struct {
	Version       int      `json:"version"`
	Issuer        string   `json:"issuer"`
	JWKSMaxAge    int64    `json:"jwks_max_age"`
	Verifiers     []string `json:"verifiers"`
	VerifierCIDRs []string `json:"verifier_cidrs"`
}

func defaultConfig() *configEntry {
	return &configEntry{Version: schemaVersion, JWKSMaxAge: defaultJWKSMaxAge, Verifiers: []string{}, VerifierCIDRs: []string{}}
}

type ringEntry struct {
	Version         int    `json:"version"`
	Name            string `json:"name"`
	Algorithm       string `json:"algorithm"`
	RSABits         int    `json:"rsa_bits"`
	RotationPeriod  int64  `json:"rotation_period"`
	VerificationTTL int64  `json:"verification_ttl"`
	PublishLead     int64  `json:"publish_lead"`
	// The optional activation gate: a pending key waits, at most
	// MaxActivationDelay, until this share of declared verifiers holds it.
	MinVerifierCoverage float64 `json:"min_verifier_coverage"`
	MaxActivationDelay  int64   `json:"max_activation_delay"`
	CreatedAt           int64   `json:"created_at"`
	DeletedAt           int64   `json:"deleted_at,omitempty"`
	HighWater           int64   `json:"high_water"`
	// LastRemoval is the latest remove or revoke time of keys maintenance
	// has forgotten, so Last-Modified never moves backwards.
	LastRemoval int64        `json:"last_removal,omitempty"`
	Keys        []signingKey `json:"keys"`
}

func (r *ringEntry) schedule() ringSchedule {
	return ringSchedule{RotationPeriod: r.RotationPeriod, VerificationTTL: r.VerificationTTL, PublishLead: r.PublishLead}
}

func (r *ringEntry) clone() *ringEntry {
	c := *r
	c.Keys = append([]signingKey(nil), r.Keys...)
	return &c
}

type roleEntry struct {
	Version         int            `json:"version"`
	Key             string         `json:"key"`
	Audiences       []string       `json:"audiences"`
	TTL             int64          `json:"ttl"`
	MaxTTL          int64          `json:"max_ttl"`
	SubjectTemplate string         `json:"subject_template"`
	AllowedSubjects []string       `json:"allowed_subjects"`
	Claims          map[string]any `json:"claims"`
	AllowedClaims   []string       `json:"allowed_claims"`
	TokenType       string         `json:"token_type"`
	// AllowTokenRead lets a read of token/<role> mint; entries written
	// before the field existed decode to false.
	AllowTokenRead bool `json:"allow_token_read"`
}

type privateEntry struct {
	Version int    `json:"version"`
	KID     string `json:"kid"`
	Alg     string `json:"alg"`
	PKCS8   []byte `json:"pkcs8"`
}

type clockEntry struct {
	Version   int   `json:"version"`
	HighWater int64 `json:"high_water"`
}

func privatePath(ring, kid string) string { return privatePrefix + ring + "/" + kid }

// getJSON reads path into out; it returns false when the entry is absent.
func getJSON(ctx context.Context, s logical.Storage, path string, out any) (bool, error) {
	e, err := s.Get(ctx, path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if e == nil {
		return false, nil
	}
	if err := e.DecodeJSON(out); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, s logical.Storage, path string, v any) error {
	e, err := logical.StorageEntryJSON(path, v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := s.Put(ctx, e); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func checkVersion(path string, v int) error {
	if v < 1 || v > schemaVersion {
		return fmt.Errorf("%s has schema version %d; this plugin reads versions 1 to %d (was it written by a newer plugin?)", path, v, schemaVersion)
	}
	return nil
}

func readConfig(ctx context.Context, s logical.Storage) (*configEntry, error) {
	c := defaultConfig()
	ok, err := getJSON(ctx, s, configPath, c)
	if err != nil || !ok {
		return defaultConfig(), err
	}
	if err := checkVersion(configPath, c.Version); err != nil {
		return nil, err
	}
	if c.Verifiers == nil {
		c.Verifiers = []string{}
	}
	if c.VerifierCIDRs == nil {
		c.VerifierCIDRs = []string{}
	}
	return c, nil
}

func readRing(ctx context.Context, s logical.Storage, name string) (*ringEntry, error) {
	r := &ringEntry{}
	ok, err := getJSON(ctx, s, ringPrefix+name, r)
	if err != nil || !ok {
		return nil, err
	}
	if err := checkVersion(ringPrefix+name, r.Version); err != nil {
		return nil, err
	}
	sortKeys(r.Keys)
	return r, nil
}

func readRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	r := &roleEntry{}
	ok, err := getJSON(ctx, s, rolePrefix+name, r)
	if err != nil || !ok {
		return nil, err
	}
	if err := checkVersion(rolePrefix+name, r.Version); err != nil {
		return nil, err
	}
	return r, nil
}

func readPrivate(ctx context.Context, s logical.Storage, ring, kid string) (*privateEntry, error) {
	p := &privateEntry{}
	ok, err := getJSON(ctx, s, privatePath(ring, kid), p)
	if err != nil || !ok {
		return nil, err
	}
	if err := checkVersion(privatePath(ring, kid), p.Version); err != nil {
		return nil, err
	}
	return p, nil
}
